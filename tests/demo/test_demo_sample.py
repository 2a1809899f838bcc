"""The shipped demo sample: complete, small, varied, and readable as a workload without ../shared."""

from __future__ import annotations

from collections import Counter

from sovrouter.demo.sample import demo_data_dir, load_sample, prompt_key
from sovrouter.workload import load_labels, resolve

SLOTS = ("local-small", "sovereign-large", "hosted-mini", "frontier")


def test_every_event_has_a_request_and_four_recorded_responses() -> None:
    sample = load_sample()
    assert len(sample.stream) >= 30
    for event in sample.stream:
        assert event.request_id in sample.requests
        for slot in SLOTS:
            assert sample.responses[(event.request_id, slot)].response


def test_sample_is_small_and_mixes_tenants_domains_personal_data_and_repeats() -> None:
    folder = demo_data_dir()
    size = sum(p.stat().st_size for p in folder.glob("*.jsonl"))
    assert size < 300_000
    assert (folder / "PROVENANCE.md").is_file()
    sample = load_sample()
    tenants = Counter(r.tenant for r in sample.requests.values())
    workload_tenants = {"acme-us", "eurobank", "ministry-airgap", "clinic-ca", "research-open"}
    assert set(tenants) == workload_tenants
    assert workload_tenants <= {t.id for t in sample.tenants.tenants}
    labels = load_labels(resolve(folder))
    assert len({lab.domain for lab in labels.values()}) == 5
    assert sum(lab.has_personal_data for lab in labels.values()) >= 5
    repeats = len(sample.stream) - len({e.request_id for e in sample.stream})
    assert repeats >= 5


def test_prompt_key_reads_user_text_only_and_content_parts() -> None:
    plain = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert prompt_key(plain) == prompt_key(parts)
    assert prompt_key(plain) != prompt_key([{"role": "user", "content": "hello!"}])


def test_prompt_index_covers_every_request() -> None:
    sample = load_sample()
    assert set(sample.by_prompt().values()) == set(sample.requests)
