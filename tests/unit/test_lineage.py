from tasks.core.lineage import code_hash, lineage_tags, run_key
from tasks.core.redact import redact
from tasks.core.settings import Settings


def test_ci_tags_come_from_an_allow_list():
    env = {"CI_PIPELINE_ID": "77", "CI_JOB_URL": "https://gitlab.example/j/1",
           "CI_MERGE_REQUEST_IID": "12", "CI_JOB_TOKEN": "glcbt-secret",
           "CI_COMMIT_SHA": "abc123", "SNOWFLAKE_PASSWORD": "hunter2"}
    tags = lineage_tags("fp", "cfg", "code", "key", "flow-run-1", ci=Settings.from_env(env).ci)
    assert tags["ci_pipeline_id"] == "77" and tags["ci_merge_request_iid"] == "12"
    assert tags["git_commit"] == "abc123" and tags["prefect_flow_run_id"] == "flow-run-1"
    assert "glcbt-secret" not in str(tags) and "hunter2" not in str(tags)


def test_run_key_depends_on_every_input():
    base = run_key("d", "c", "k", "cpu")
    assert base == run_key("d", "c", "k", "cpu")
    assert len({base, run_key("d2", "c", "k", "cpu"), run_key("d", "c2", "k", "cpu"),
                run_key("d", "c", "k2", "cpu"), run_key("d", "c", "k", "cuda")}) == 5


def test_code_hash_is_stable():
    assert code_hash() == code_hash() and len(code_hash()) == 64


def test_redact_hides_credentials_in_urls():
    assert redact("postgresql://user:pw@db:5432/x") == "postgresql://***@db:5432/x"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
