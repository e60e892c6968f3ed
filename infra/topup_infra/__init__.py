"""TopUp Analytics on AWS: one construct per concern, composed by `stack.TopupStack`."""
