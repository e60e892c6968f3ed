"""CloudFront in front of everything: `/api/event` and `/js/*` to ingest, the rest (dashboard and
API) to query. The tracker script is cached at the edge; nothing else is.

Function URL origins are reached without origin access control: OAC makes browsers send a
SHA-256 of every POST body, which `sendBeacon` cannot. Instead ingest believes CloudFront's viewer
headers only on requests carrying the origin secret CloudFront adds (`X-Topup-Origin`).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

# The viewer's host, for the dashboard's snippets (function URLs must see their own Host).
FORWARDED_HOST = """function handler(event) {
  var request = event.request;
  request.headers['x-forwarded-host'] = { value: request.headers.host.value };
  return request;
}"""


class Router(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        ingest_url: lambda_.IFunctionUrl,
        query_url: lambda_.IFunctionUrl,
        origin_secret: str,
        query_timeout: Duration,
    ) -> None:
        super().__init__(scope, id)
        ingest = origins.FunctionUrlOrigin(
            ingest_url, custom_headers={"X-Topup-Origin": origin_secret}
        )
        # As long as the query function may run (a first request waits for Aurora to resume).
        query = origins.FunctionUrlOrigin(query_url, read_timeout=query_timeout)
        event_headers = cloudfront.OriginRequestPolicy(
            self,
            "EventHeaders",
            comment="What ingest reads from a tracker request",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(
                "User-Agent",
                "Origin",
                "Referer",
                "Content-Type",
                "CloudFront-Viewer-Address",
                "CloudFront-Viewer-Country",
                "CloudFront-Viewer-Country-Region",
                "CloudFront-Viewer-City",
                "CloudFront-Viewer-Time-Zone",
            ),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.none(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )
        forwarded_host = cloudfront.Function(
            self,
            "ForwardedHost",
            code=cloudfront.FunctionCode.from_inline(FORWARDED_HOST),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="TopUp Analytics",
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            default_behavior=cloudfront.BehaviorOptions(
                origin=query,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=forwarded_host,
                        event_type=cloudfront.FunctionEventType.VIEWER_REQUEST,
                    )
                ],
            ),
            additional_behaviors={
                "/api/event": cloudfront.BehaviorOptions(
                    origin=ingest,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    origin_request_policy=event_headers,
                ),
                "/js/*": cloudfront.BehaviorOptions(
                    origin=ingest,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                    cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                    compress=True,
                ),
            },
        )

    @property
    def url(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}"
