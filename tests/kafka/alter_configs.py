#!/usr/bin/env python3
"""Topic configs changed through Kafka admin clients, for the Kafka listener's config test.

  alter_configs.py BOOTSTRAP TOPIC
1. confluent-kafka: incremental_alter_configs SET retention.ms=3600000 and
   segment.bytes=1048576, then describe_configs.
2. confluent-kafka: incremental_alter_configs DELETE segment.bytes (back to the default),
   a refused one (cleanup.policy=compact while retention.ms is set: that would be
   compact,delete), then cleanup.policy=compact,delete (compaction turned on).
3. kafka-python: alter_configs forced to the older AlterConfigs (which replaces the whole
   config: the client sends back the topic's overrides, as DescribeConfigs reports them,
   with its change) with retention.bytes=5000000, then describe_configs.
Prints {"after_set", "after_delete", "refused", "after_policy", "after_replace"}: each a dict
of the configs described (refused: the error's name).
"""
import json
import sys

from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, ResourceType)
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

bootstrap, topic = sys.argv[1], sys.argv[2]
KEYS = ["retention.ms", "retention.bytes", "segment.bytes", "cleanup.policy"]
admin = AdminClient({"bootstrap.servers": bootstrap})


def describe():
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=30)
    return {k: configs[k].value for k in KEYS if k in configs}


def incremental(entries):
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    return admin.incremental_alter_configs([res])[res]


incremental([
    ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
]).result(timeout=30)
after_set = describe()
incremental([
    ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
]).result(timeout=30)
after_delete = describe()
try:
    incremental([
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
    ]).result(timeout=30)
    refused = None
except Exception as e:  # KafkaException carrying the broker's error
    refused = e.args[0].name() if e.args and hasattr(e.args[0], "name") else str(e)
incremental([
    ConfigEntry("cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.SET),
]).result(timeout=30)
after_policy = describe()

kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)
kadmin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic,
                                      configs={"retention.bytes": "5000000"})],
                     incremental=False)
kadmin.close()
after_replace = describe()
print(json.dumps({
    "after_set": after_set,
    "after_delete": after_delete,
    "refused": refused,
    "after_policy": after_policy,
    "after_replace": after_replace,
}))
