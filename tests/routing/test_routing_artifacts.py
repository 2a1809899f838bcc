"""The shipped artifacts load and drive a decision end to end (no training at request time)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from sovrouter.build import make_router
from sovrouter.catalog import Catalog, Tenants
from sovrouter.config import Settings
from sovrouter.contracts import Candidate, Detection
from sovrouter.intake import normalize_chat
from sovrouter.routing.learned import LearnedRouter
from sovrouter.routing.model import SLOT_ORDER, Bundle


def test_shipped_bundle_loads_with_thresholds() -> None:
    bundle = Bundle.load()
    assert set(bundle.models.prior_models) == set(SLOT_ORDER)
    assert bundle.thresholds.high_value_factor <= 1.0
    assert bundle.models.domains


def test_shipped_artifacts_match_the_taxonomy_version() -> None:
    """The artifacts record the docs/taxonomy.md version they were trained against; a taxonomy change that
    alters routing paths must come with retrained artifacts."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "taxonomy.md").read_text(encoding="utf-8")
    found = re.search(r"Version \*\*([0-9.]+)\*\*", doc)
    assert found is not None
    assert Bundle.load().models.version == found.group(1)


def test_learned_router_from_settings_classifies_and_decides(catalog: Catalog, tenants: Tenants) -> None:
    settings = Settings(catalog="x", tenants="y", router="learned")  # type: ignore[arg-type]
    router, classifier = make_router(settings, catalog, tenants)
    assert isinstance(router, LearnedRouter)
    req = normalize_chat({"messages": [{"role": "user", "content": (
        "Question: Which gas do plants absorb from the air?\nA) Oxygen\nB) Carbon dioxide\nC) Nitrogen\n"
        "D) Helium\nAnswer:")}]}, tenant="acme-us", request_id="r1")
    sig = classifier.classify(req, Detection())
    assert sig.domain in router.models.domains
    assert sig.output_kind in ("free_text", "choice", "number", "code")
    assert sig.language == "en"
    assert set(sig.slot_prior) == set(SLOT_ORDER)  # type: ignore[attr-defined]
    allowed = [Candidate(slot="local-small", deployment="edge"), Candidate(slot="sovereign-large",
                                                                          deployment="eu-sov")]
    d = router.decide(req, sig, allowed)
    assert set(d.plan) == set(allowed)
    assert d.plan[-1].slot in ("sovereign-large", "local-small")


def test_the_prompt_features_read_the_language_as_training_did() -> None:
    """Training reads each prompt's language with ``detect_language``; serving took the personal-data detector's
    instead when it had one (it reads only a line with personal data and prefers en/de/fr), so 66 of 4,898 dev
    prompts were featurised with another language than the models were trained on."""
    from sovrouter.contracts import Detection
    from sovrouter.intake import normalize_chat
    from sovrouter.routing.learned import LearnedClassifier

    classifier = LearnedClassifier(Bundle.load())
    req = normalize_chat({"messages": [{"role": "user", "content": "Antwort bitte an Anna Weber: what is 2 + 2?"}]},
                         tenant="eurobank", request_id="r")
    plain = classifier.classify(req, Detection())
    told = classifier.classify(req, Detection(language="en", pii_types=["PERSON"]))
    assert told.route_features == plain.route_features  # type: ignore[attr-defined]
    assert told.language == "en"  # the signal still reports what the detector read


def test_a_direct_domain_the_models_do_not_name_is_refused(tmp_path: Path) -> None:
    """A thresholds file naming a domain the classifier never predicts would silently never send it direct."""
    import shutil

    import pytest

    from sovrouter.errors import ConfigError

    shipped = Path(str(resources.files("sovrouter"))) / "data" / "router"
    for name in ("router.joblib", "thresholds.json"):
        shutil.copy(shipped / name, tmp_path / name)
    assert "chat_hard" in Bundle.load(tmp_path).thresholds.standard.direct_domains  # v2.3 ships it
    th = (tmp_path / "thresholds.json").read_text(encoding="utf-8").replace('"chat_hard"', '"chit_chat"')
    (tmp_path / "thresholds.json").write_text(th, encoding="utf-8")
    with pytest.raises(ConfigError, match="chit_chat"):
        Bundle.load(tmp_path)


def _bundle_with_dense_features(n_dense: int, domains: tuple[str, ...] = ("chat_hard", "knowledge")) -> Bundle:
    """A router bundle whose models read ``n_dense`` cheap prompt features, as ``sovrouter train`` writes one (the
    same estimator classes and widths; zero weights). Before router v2.2 (ceb3b0f, 2026-11-28) the prompt had 14
    cheap features (an 'Answer:' line count among them); it has 13 since."""
    import numpy as np

    from sovrouter.routing.answers import ANSWER_FEATURES, PAIR_FEATURES
    from sovrouter.routing.features import HASH_FEATURES
    from sovrouter.routing.model import OUTPUT_KINDS, TOP_SLOTS, LinearModel, RouterModels, Thresholds

    def linear(k: int, width: int, classes: list[object]) -> LinearModel:
        return LinearModel(coef=np.zeros((k, width), dtype=np.float32), intercept=np.zeros(k, dtype=np.float32),
                           classes_=np.asarray(classes))

    prompt_width = HASH_FEATURES + n_dense
    vector = n_dense + len(domains) + len(OUTPUT_KINDS) + len(SLOT_ORDER)  # PromptScores.vector()
    a, pair, tops = len(ANSWER_FEATURES), len(PAIR_FEATURES), len(TOP_SLOTS)
    s1, s2 = vector + a + tops, vector + 2 * a + pair + tops
    s3, s4 = vector + 3 * a + 3 * pair, vector + 4 * a + 6 * pair
    models = RouterModels(
        domains=domains, domain_model=linear(len(domains), prompt_width, list(domains)),
        kind_model=linear(len(OUTPUT_KINDS), prompt_width, list(OUTPUT_KINDS)),
        prior_models={s: linear(1, prompt_width, [0, 1]) for s in SLOT_ORDER},
        stage1_first=linear(1, s1, [0, 1]), stage1_top=linear(1, s1, [0, 1]),
        stage2_second=linear(1, s2, [0, 1]), stage2_top=linear(1, s2, [0, 1]),
        stage3_mid=linear(1, s3, [0, 1]), stage3_top=linear(1, s3, [0, 1]),
        stage4={s: linear(1, s4, [0, 1]) for s in TOP_SLOTS})
    thresholds = Thresholds.model_validate_json(
        (Path(str(resources.files("sovrouter"))) / "data" / "router" / "thresholds.json").read_text(encoding="utf-8"))
    return Bundle(models, thresholds.model_copy(update={"standard": thresholds.standard.model_copy(
        update={"direct_domains": ()})}))


def test_a_router_trained_for_other_prompt_features_is_refused_at_load(tmp_path: Path) -> None:
    """Found in review (2026-11-28): a router that ``sovrouter train`` wrote before v2.2 (14 cheap prompt features)
    and that ``artifacts.router`` names loaded without a word, then failed every request's classification with a
    ValueError (a matrix of the wrong width). It is refused at start now, saying to retrain it."""
    import pytest

    from sovrouter.errors import ConfigError
    from sovrouter.routing.features import PROMPT_FEATURES

    current = tmp_path / "current"
    _bundle_with_dense_features(len(PROMPT_FEATURES)).save(current)
    Bundle.load(current)  # the layout this version computes loads
    old = tmp_path / "v2.1"
    _bundle_with_dense_features(len(PROMPT_FEATURES) + 1).save(old)
    with pytest.raises(ConfigError, match="retrain"):
        Bundle.load(old)


def test_a_router_whose_answer_stage_models_read_other_widths_is_refused_at_load(tmp_path: Path) -> None:
    """The load-time probe scores every stage model, not just the prompt models: a router whose prompt features
    match but whose answer-reading stages were trained on another answer-feature layout would load and then fail
    every cascade's review (found in review)."""
    import numpy as np
    import pytest

    from sovrouter.errors import ConfigError
    from sovrouter.routing.features import PROMPT_FEATURES

    for name in ("stage1_first", "stage2_top", "stage3_top"):
        bundle = _bundle_with_dense_features(len(PROMPT_FEATURES))
        model = getattr(bundle.models, name)
        model.coef = np.zeros((1, model.coef.shape[1] + 1), dtype=np.float32)  # one answer feature more
        bundle.save(tmp_path / name)
        with pytest.raises(ConfigError, match="retrain"):
            Bundle.load(tmp_path / name)
    stage4 = _bundle_with_dense_features(len(PROMPT_FEATURES))
    model = stage4.models.stage4["frontier"]
    model.coef = np.zeros((1, model.coef.shape[1] + 1), dtype=np.float32)
    stage4.save(tmp_path / "stage4")
    with pytest.raises(ConfigError, match="retrain"):
        Bundle.load(tmp_path / "stage4")


def test_linear_models_give_the_same_floats_and_ship_only_their_coefficients() -> None:
    """``predict_proba`` multiplies by a C-ordered float64 copy of ``coef.T`` (scipy copied and converted the
    transposed float32 view on every call: 0.3 ms per request for the domain model); the scores are the same floats
    as the plain product, and a pickled model (the artifact) never carries the copy."""
    import pickle

    import numpy as np
    import scipy.sparse as sp

    models = Bundle.load().models
    rng = np.random.default_rng(0)
    for model in (models.domain_model, models.kind_model, models.prior_models["frontier"]):
        width = model.coef.shape[1]
        shipped = pickle.dumps(model)
        x = sp.random(4, width, density=0.002, format="csr", dtype=np.float64, random_state=rng)
        plain = np.asarray(x @ model.coef.T, dtype=np.float64) + model.intercept
        scores = np.asarray(x @ model._weights, dtype=np.float64) + model.intercept
        assert np.array_equal(scores, plain)
        assert model.predict_proba(x).shape == (4, max(2, model.coef.shape[0]))
        assert pickle.dumps(model) == shipped  # the copy made by the call above is not in the state
        assert "_weights" not in pickle.loads(shipped).__dict__
