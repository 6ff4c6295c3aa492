"""Topic names, specs from the settings, and the plan `darkroom topics ensure` prints (fake admin client)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from confluent_kafka.admin import ConfigEntry, ConfigSource

from pipeline.contracts.topics import FILES, GALLERIES
from pipeline.settings import TopicSettings
from pipeline.topics import TopicNames, TopicSpec, installed_topic_specs, plan_topics


def test_the_prefix_applies_to_every_topic_and_is_removable() -> None:
    names = TopicNames("studio-prod.")
    assert names(FILES) == "studio-prod.files"
    assert names.logical("studio-prod.files") == FILES
    assert TopicNames()(FILES) == FILES


def test_specs_carry_prefix_replication_and_min_insync_from_the_settings() -> None:
    specs = installed_topic_specs(TopicSettings(prefix="p.", replication_factor=3, min_insync_replicas=2, partitions=12))
    files = next(s for s in specs if s.name == "p.files")
    assert (files.partitions, files.replication_factor) == (12, 3)
    assert files.config["min.insync.replicas"] == "2"
    assert all(s.name.startswith("p.") for s in specs)


def test_by_default_the_broker_chooses_the_replication_factor() -> None:
    assert {s.replication_factor for s in installed_topic_specs()} == {-1}
    assert all("min.insync.replicas" not in s.config for s in installed_topic_specs())


def _done(value: Any) -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_result(value)
    return fut


class FakeAdmin:
    """Topics with partition counts and described configs; records any call that would change the cluster."""

    def __init__(self, topics: dict[str, int], configs: dict[str, dict[str, ConfigEntry]]) -> None:
        self.topics, self.configs, self.changes = topics, configs, []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={t: SimpleNamespace(partitions=dict.fromkeys(range(n))) for t, n in self.topics.items()})

    def describe_configs(self, resources: list[Any], request_timeout: float = -1) -> dict[Any, Future[Any]]:
        return {r: _done(self.configs[r.name]) for r in resources}

    def __getattr__(self, name: str) -> Any:
        def change(*args: Any, **kwargs: Any) -> None:
            self.changes.append(name)
        return change


def test_the_plan_sets_defaults_but_reports_a_config_an_operator_set_as_drift() -> None:
    week = "604800000"
    admin = FakeAdmin(
        {FILES: 6, GALLERIES: 3},
        {
            # Operator lowered retention on the topic itself: drift, never reverted.
            FILES: {"retention.ms": ConfigEntry("retention.ms", week, source=ConfigSource.DYNAMIC_TOPIC_CONFIG)},
            # Still the broker's default: ours is applied.
            GALLERIES: {"retention.ms": ConfigEntry("retention.ms", week, source=ConfigSource.DEFAULT_CONFIG)},
        },
    )
    specs = [TopicSpec(FILES, 6, -1, {"retention.ms": "-1"}), TopicSpec(GALLERIES, 6, -1, {"retention.ms": "-1"}),
             TopicSpec("shoots", 6, -1, {})]
    plan = plan_topics(admin, specs)  # type: ignore[arg-type]
    assert [s.name for s in plan.create] == ["shoots"]
    assert [s.name for s in plan.grow] == [GALLERIES]
    assert plan.configure == {GALLERIES: {"retention.ms": "-1"}}
    assert [(d.topic, d.key, d.have) for d in plan.drift] == [(FILES, "retention.ms", week)]
    assert any(line.startswith(f"drift {FILES}") for line in plan.lines())
    assert admin.changes == []  # planning only reads


def test_the_prefix_reaches_the_asyncapi_addresses() -> None:
    from pipeline.contracts.asyncapi import generate

    document = generate(prefix="studio-prod.")
    addresses = {c["address"] for c in document["channels"].values()}
    assert "studio-prod.files" in addresses and all(a.startswith("studio-prod.") for a in addresses)
    assert all(c["bindings"]["kafka"]["topic"].startswith("studio-prod.") for c in document["channels"].values())


def test_the_prefix_reaches_consumer_groups_too() -> None:
    from pipeline.worker import group_id

    assert group_id("resize") == "darkroom.resize"
    assert group_id("resize", "studio-prod.") == "studio-prod.darkroom.resize"
