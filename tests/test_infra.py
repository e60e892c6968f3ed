"""The CDK app, synthesized offline and checked: what the template must contain, and cfn-lint.

Ignored cfn-lint rule: W3005 (a DependsOn that a GetAtt already implies). The CDK adds it for
every function's role, and the Firehose streams need their role's *policy* in place before
CloudFormation creates them, which only the explicit dependency on the role construct gives.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

CFN_LINT_IGNORED = ["W3005"]


def synthesize(root: Path, **context):
    os.environ.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", str(root.parent / "jsii-cache"))
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from topup_infra.config import config_from_context
    from topup_infra.stack import TopupStack

    app = cdk.App(outdir=str(root / "cdk.out"))
    stack = TopupStack(app, "Topup-test", config_from_context({"stage": "test"} | context))
    assembly = app.synth()
    return Template.from_stack(stack), assembly.stacks[0].template_full_path


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """The default deployment (`network: public`)."""
    return synthesize(tmp_path_factory.mktemp("cdk"), aurora_max_acu=8)


@pytest.fixture(scope="module")
def synthesized_private(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-private"), network="private")


def cheapest_context() -> dict:
    """The cheapest variant's context as infra/README.md documents it (`-c topup='…'`)."""
    readme = (Path(__file__).parents[1] / "infra" / "README.md").read_text()
    text = re.search(r"\*\*cheapest\*\* — the same stack with `-c topup='(.*?)'`", readme, re.S)
    assert text is not None
    return json.loads(" ".join(text.group(1).split()))


@pytest.fixture(scope="module")
def synthesized_cheapest(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-cheapest"), **cheapest_context())


def resources(template, kind):
    return template.find_resources(kind)


def only(template, kind):
    found = resources(template, kind)
    assert len(found) == 1, f"{len(found)} {kind}"
    return next(iter(found.values()))["Properties"]


def test_database_scales_to_zero_on_a_current_engine(synthesized):
    template, _ = synthesized
    cluster = only(template, "AWS::RDS::DBCluster")
    assert cluster["Engine"] == "aurora-postgresql" and cluster["EngineVersion"].startswith("16.")
    assert cluster["ServerlessV2ScalingConfiguration"]["MinCapacity"] == 0
    assert cluster["ServerlessV2ScalingConfiguration"]["MaxCapacity"] == 8
    assert cluster["StorageEncrypted"] is True
    assert "MasterUserPassword" in cluster  # from the generated secret
    template.resource_count_is("AWS::SecretsManager::Secret", 3)  # database, Firehose key, origin


def database_functions(template):
    return {
        name: f["Properties"]
        for name, f in resources(template, "AWS::Lambda::Function").items()
        if "TOPUP_DATABASE_SECRET_ARN"
        in f["Properties"].get("Environment", {}).get("Variables", {})
    }


def test_the_database_takes_tls_only(synthesized, synthesized_private):
    for template, _ in (synthesized, synthesized_private):
        parameters = only(template, "AWS::RDS::DBClusterParameterGroup")["Parameters"]
        assert parameters == {"rds.force_ssl": "1"}
        cluster = only(template, "AWS::RDS::DBCluster")
        assert "DBClusterParameterGroupName" in cluster


def test_public_network_costs_nothing_and_keeps_functions_out_of_vpcs(synthesized):
    template, _ = synthesized
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::VPCEndpoint", 0)
    assert only(template, "AWS::RDS::DBInstance")["PubliclyAccessible"] is True
    functions = database_functions(template)
    assert len(functions) == 4  # process, query, migrate, maintain
    assert all("VpcConfig" not in f for f in functions.values())
    ingress = [
        r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
    ]
    assert [r["CidrIp"] for r in ingress] == ["0.0.0.0/0"]  # the database's port, TLS only


def test_private_network_keeps_the_database_and_its_functions_inside(synthesized_private):
    template, _ = synthesized_private
    # One NAT gateway: Cognito's JWKS has no endpoint for a user pool with a login domain.
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()
    assert [e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints] == ["Gateway"]
    assert only(template, "AWS::RDS::DBInstance")["PubliclyAccessible"] is False
    functions = database_functions(template)
    assert len(functions) == 4 and all("VpcConfig" in f for f in functions.values())
    subnets = {
        name: s["Properties"]["MapPublicIpOnLaunch"]
        for name, s in resources(template, "AWS::EC2::Subnet").items()
    }
    placed = {ref["Ref"] for f in functions.values() for ref in f["VpcConfig"]["SubnetIds"]} | {
        ref["Ref"] for ref in only(template, "AWS::RDS::DBSubnetGroup")["SubnetIds"]
    }
    assert placed and not any(subnets[name] for name in placed)  # private subnets only
    ingress = resources(template, "AWS::EC2::SecurityGroupIngress").values()
    assert all("CidrIp" not in rule["Properties"] for rule in ingress)


def test_functions_are_arm64_images_with_their_settings(synthesized):
    template, _ = synthesized
    functions = {
        k: v["Properties"]
        for k, v in resources(template, "AWS::Lambda::Function").items()
        if v["Properties"].get("PackageType") == "Image"
    }
    assert len(functions) == 5  # ingest, process, query, migrate, maintain
    assert all(f["Architectures"] == ["arm64"] for f in functions.values())
    env = {name: f["Environment"]["Variables"] for name, f in functions.items()}
    ingest = next(v for n, v in env.items() if n.startswith("Ingest"))
    assert ingest["TOPUP_SINK"] == "firehose" and ingest["TOPUP_TRUST_CLOUDFRONT_HEADERS"] == "true"
    assert ingest["TOPUP_FIREHOSE_STREAM"] == "topup-test-ingest"
    process = next(v for n, v in env.items() if n.startswith("Process"))
    assert process["TOPUP_ARCHIVE"] == "firehose" and "TOPUP_DATABASE_SECRET_ARN" in process
    assert "TOPUP_FIREHOSE_ACCESS_KEY_SECRET_ARN" in process
    query = next(v for n, v in env.items() if n.startswith("Query"))
    assert {
        "TOPUP_OIDC_ISSUER",
        "TOPUP_OIDC_AUDIENCE",
        "TOPUP_OIDC_JWKS_URL",
        "TOPUP_ATHENA_WORKGROUP",
    } <= set(query)
    commands = sorted(str(f.get("ImageConfig", {}).get("Command")) for f in functions.values())
    assert (
        "['topup.tasks.maintain_handler']" in commands
        and "['topup.tasks.migrate_handler']" in commands
    )
    ingest_fn = next(f for n, f in functions.items() if n.startswith("Ingest"))
    assert "VpcConfig" not in ingest_fn  # ingest never touches the database


def test_ingest_stream_delivers_to_process_over_http(synthesized):
    template, _ = synthesized
    streams = {
        v["Properties"]["DeliveryStreamName"]: v["Properties"]
        for v in resources(template, "AWS::KinesisFirehose::DeliveryStream").values()
    }
    http = streams["topup-test-ingest"]["HttpEndpointDestinationConfiguration"]
    assert "/firehose" in json.dumps(http["EndpointConfiguration"]["Url"])
    assert http["SecretsManagerConfiguration"]["Enabled"] is True
    assert http["S3BackupMode"] == "FailedDataOnly"
    assert http["RequestConfiguration"]["ContentEncoding"] == "GZIP"
    for table in ("events", "initial-events"):
        iceberg = streams[f"topup-test-archive-{table}"]["IcebergDestinationConfiguration"]
        assert iceberg["BufferingHints"] == {"IntervalInSeconds": 900, "SizeInMBs": 128}
        assert iceberg["DestinationTableConfigurationList"][0][
            "DestinationTableName"
        ] == table.replace("-", "_")


def test_archive_tables_match_the_local_archive(synthesized):
    from topup.archive_layout import BUCKETS, COLUMNS

    template, _ = synthesized
    tables = {
        v["Properties"]["TableInput"]["Name"]: v["Properties"]
        for v in resources(template, "AWS::Glue::Table").values()
    }
    assert set(tables) == set(COLUMNS)
    for name, table in tables.items():
        iceberg = table["OpenTableFormatInput"]["IcebergInput"]["IcebergTableInput"]
        assert [f["Name"] for f in iceberg["Schema"]["Fields"]] == list(COLUMNS[name])
        transforms = [(f["Name"], f["Transform"]) for f in iceberg["PartitionSpec"]["Fields"]]
        assert transforms == [("site_bucket", f"bucket[{BUCKETS}]"), ("ts_day", "day")]
    optimizers = resources(template, "AWS::Glue::TableOptimizer").values()
    assert sorted(o["Properties"]["TableName"] for o in optimizers) == sorted(COLUMNS)
    assert all(o["Properties"]["Type"] == "compaction" for o in optimizers)
    workgroup = only(template, "AWS::Athena::WorkGroup")
    assert workgroup["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"] == 10 * 1024**3
    assert workgroup["WorkGroupConfiguration"]["EnforceWorkGroupConfiguration"] is True
    bucket = only(template, "AWS::S3::Bucket")
    assert (
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]["SSEAlgorithm"]
        == "AES256"
    )
    assert any(
        r.get("Prefix") == "firehose-failed/" and r.get("ExpirationInDays") == 14
        for r in bucket["LifecycleConfiguration"]["Rules"]
    )


def _policies_of(template, role_prefix):
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if re.search(rf'"{role_prefix}', roles):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statements):
    out = set()
    for s in statements:
        out |= set([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return out


def test_each_function_has_only_the_access_it_needs(synthesized):
    template, _ = synthesized
    ingest = _policies_of(template, "IngestFunctionServiceRole")
    assert _actions(ingest) == {"firehose:PutRecord", "firehose:PutRecordBatch"}
    assert "topup-test-ingest" in json.dumps([s["Resource"] for s in ingest])
    assert "archive" not in json.dumps([s["Resource"] for s in ingest])
    process = _policies_of(template, "ProcessFunctionServiceRole")
    assert _actions(process) <= {
        "firehose:PutRecord",
        "firehose:PutRecordBatch",
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    }
    assert "topup-test-archive-events" in json.dumps(
        process
    ) and "topup-test-ingest" not in json.dumps(process)
    query = _policies_of(template, "QueryFunctionServiceRole")
    assert {"athena:StartQueryExecution", "athena:GetQueryResults"} <= _actions(query)
    assert not any(a.startswith("firehose:") for a in _actions(query))
    athena = next(s for s in query if "athena:StartQueryExecution" in s["Action"])
    assert "workgroup/topup-test" in json.dumps(athena["Resource"])


def docker_images(template_path) -> list[dict]:
    assets = json.loads(Path(template_path).with_name("Topup-test.assets.json").read_text())
    return [image["source"] for image in assets["dockerImages"].values()]


def test_process_can_write_the_archive_tables_itself(synthesized, synthesized_cheapest):
    template, path = synthesized_cheapest
    # Its image carries pyiceberg then (one image for the function and its tasks); the
    # default's does not.
    process_images = [
        i for i in docker_images(path) if i["dockerFile"].endswith("process.Dockerfile")
    ]
    assert [i.get("dockerBuildArgs") for i in process_images] == [
        {"EXTRAS": "process,glue-archive"}
    ]
    assert not any("dockerBuildArgs" in i for i in docker_images(synthesized[1]))
    streams = resources(template, "AWS::KinesisFirehose::DeliveryStream").values()
    assert [s["Properties"]["DeliveryStreamName"] for s in streams] == ["topup-test-ingest"]
    functions = resources(template, "AWS::Lambda::Function")
    process = next(f for name, f in functions.items() if name.startswith("ProcessFunction"))
    environment = process["Properties"]["Environment"]["Variables"]
    assert environment["TOPUP_ARCHIVE"] == "glue"
    assert environment["TOPUP_ATHENA_DATABASE"] == "topup_test"
    assert "TOPUP_ARCHIVE_EVENTS_STREAM" not in environment
    statements = _policies_of(template, "ProcessFunctionServiceRole")
    assert {"glue:GetTable", "glue:UpdateTable", "s3:PutObject", "s3:GetObject*"} <= _actions(
        statements
    )
    assert not any(a.startswith("firehose:") for a in _actions(statements))
    glue = next(s for s in statements if "glue:UpdateTable" in s["Action"])
    assert "table/topup_test/*" in json.dumps(glue["Resource"])


def test_cloudfront_routes_events_and_the_tracker_to_ingest(synthesized):
    template, _ = synthesized
    config = only(template, "AWS::CloudFront::Distribution")["DistributionConfig"]
    behaviors = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    assert set(behaviors) == {"/api/event", "/js/*"}
    origins = {o["Id"]: o for o in config["Origins"]}
    ingest_origin = origins[behaviors["/api/event"]["TargetOriginId"]]
    assert ingest_origin["OriginCustomHeaders"][0]["HeaderName"] == "X-Topup-Origin"
    assert behaviors["/js/*"]["TargetOriginId"] == behaviors["/api/event"]["TargetOriginId"]
    assert (
        config["DefaultCacheBehavior"]["TargetOriginId"]
        != behaviors["/api/event"]["TargetOriginId"]
    )
    assert "POST" in behaviors["/api/event"]["AllowedMethods"]
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"


def test_auth_migrations_and_maintenance(synthesized):
    template, _ = synthesized
    template.resource_count_is("AWS::Cognito::UserPool", 1)
    template.resource_count_is("AWS::Cognito::UserPoolDomain", 1)
    login = resources(template, "Custom::AWS")
    assert "updateUserPoolClient" in json.dumps(login) and "CallbackURLs" in json.dumps(login)
    schema = next(iter(resources(template, "Custom::TopupSchema").values()))
    from topup_infra.operations import migrations_version

    assert schema["Properties"]["Version"] == migrations_version()
    rule = only(template, "AWS::Events::Rule")
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    assert "Maintain" in json.dumps(rule["Targets"])
    outputs = template.to_json()["Outputs"]
    assert {
        "DashboardUrl",
        "TrackerScriptUrl",
        "UserPoolId",
        "UserPoolClientId",
        "LoginUrl",
    } <= set(outputs)


def test_cfn_lint_passes(synthesized, synthesized_private, synthesized_cheapest):
    lint = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--ignore-checks",
            *CFN_LINT_IGNORED,
            "--",
            synthesized[1],
            synthesized_private[1],
            synthesized_cheapest[1],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_cost_model_prices_the_network_and_secrets_the_stack_creates(synthesized):
    from topup import cost_model

    template, _ = synthesized
    deployment = cost_model.price(
        10_000_000, cost_model.CostInputs(), cost_model.load_prices(), cheapest=False
    )
    fixed = {line.service: line.item for line in deployment.lines if line.fixed}
    assert (
        fixed["Secrets Manager"]
        == f"{len(resources(template, 'AWS::SecretsManager::Secret'))} secrets"
    )
    # The only address billed: the database's; no NAT gateway, no interface endpoint.
    assert only(template, "AWS::RDS::DBInstance")["PubliclyAccessible"] is True
    assert fixed["VPC"] == "Aurora's public IPv4 address"
    assert not resources(template, "AWS::EC2::NatGateway") and not resources(
        template, "AWS::EC2::VPCEndpoint"
    )


def test_a_paused_database_is_waited_for(synthesized):
    template, _ = synthesized
    functions = database_functions(template)
    timeouts = {
        f["Environment"]["Variables"]["TOPUP_DATABASE_CONNECT_TIMEOUT_S"]
        for f in functions.values()
    }
    assert timeouts == {"45"}  # Aurora resumes in ~15 s (~30 s after a day paused)
    # Aurora pauses only when no session is open: idle pooled ones are ended after a minute.
    idle = {
        f["Environment"]["Variables"]["TOPUP_DATABASE_IDLE_SESSION_S"] for f in functions.values()
    }
    assert idle == {"60"}
    assert all(f["Timeout"] > 45 for f in functions.values())
    query = next(f for name, f in functions.items() if name.startswith("Query"))
    distribution = only(template, "AWS::CloudFront::Distribution")["DistributionConfig"]
    read_timeouts = sorted(
        o["CustomOriginConfig"].get("OriginReadTimeout", 30) for o in distribution["Origins"]
    )
    assert read_timeouts == [30, query["Timeout"]]  # ingest answers at once; query may wait


def test_cost_model_uses_the_stacks_idle_session_and_pause():
    from topup import cost_model
    from topup_infra.stack import DATABASE_IDLE_SESSION

    assert DATABASE_IDLE_SESSION.to_seconds() == cost_model.IDLE_SESSION_S
    cheapest = cheapest_context()
    assert cheapest["aurora_auto_pause_minutes"] * 60 == cost_model.AUTO_PAUSE_S
    assert cheapest["ingest_buffer_seconds"] == cost_model.CHEAPEST_BUFFER_S
    assert cheapest["ingest_buffer_mb"] == cost_model.CHEAPEST_BUFFER_MB
    assert cheapest["archive_writer"] == "process"  # the model prices no archive streams
