//! Tests of the broker's configuration (`config.rs`): defaults, the example file, env
//! overrides and validation.

use super::*;

#[test]
fn defaults_need_no_file() {
    let c = BrokerConfig::load(None, std::iter::empty()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.listen.ip().to_string(), "127.0.0.1");
    assert!(c.shard_count() >= 1);
    c.validate().unwrap();
}

/// The option names serde expects in a table: its unknown-field error lists them all
/// ("unknown field `x`, expected one of `a`, `b`, ...").
fn option_names(table_header: &str) -> Vec<String> {
    let text = format!("{table_header}\nno_such_option = 0\n");
    let e = toml::from_str::<BrokerConfig>(&text).unwrap_err().to_string();
    let list = e.split("expected one of").nth(1).unwrap_or_else(|| panic!("{e}"));
    let names: Vec<String> = list.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(names.len() > 5, "{e}");
    names
}

#[test]
fn the_example_config_lists_every_option_at_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/broker.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = BrokerConfig::load(Some(&path), std::iter::empty()).unwrap();
    // The example's one departure from the defaults: where the systemd unit keeps data.
    let expected =
        BrokerConfig { data_dir: PathBuf::from("/var/lib/broker"), ..BrokerConfig::default() };
    assert_eq!(
        format!("{parsed:#?}"),
        format!("{expected:#?}"),
        "deploy/broker.toml must show every default"
    );
    let table: toml::Table = text.parse().unwrap();
    let log = table["log"].as_table().expect("[log] table");
    for (names, section, label) in
        [(option_names(""), &table, "top level"), (option_names("[log]"), log, "[log]")]
    {
        for name in names {
            assert!(section.contains_key(&name), "{name} ({label}) missing from {path:?}");
        }
    }
}

#[test]
fn metrics_listen_is_an_address_or_off() {
    let env = |v: &str| vec![("BROKER_METRICS_LISTEN".to_string(), v.to_string())];
    let c = BrokerConfig::load(None, env("off").into_iter()).unwrap();
    assert_eq!(c.metrics_listen, MetricsListen::Off);
    let c = BrokerConfig::load(None, env("0.0.0.0:9999").into_iter()).unwrap();
    assert_eq!(c.metrics_listen, MetricsListen::On("0.0.0.0:9999".parse().unwrap()));
    let e = BrokerConfig::load(None, env("9644").into_iter()).unwrap_err();
    assert!(e.to_string().contains("HOST:PORT or \"off\""), "{e}");
    assert_eq!(BrokerConfig::default().metrics_listen.to_string(), "127.0.0.1:9644");
    let c: BrokerConfig =
        toml::from_str("metrics_listen = \"off\"\nlog_format = \"json\"").unwrap();
    assert_eq!((c.metrics_listen, c.log_format), (MetricsListen::Off, LogFormat::Json));
}

#[test]
fn kafka_listen_is_off_by_default_and_set_by_env_or_file() {
    assert_eq!(BrokerConfig::default().kafka_listen, MetricsListen::Off);
    let env = vec![("BROKER_KAFKA_LISTEN".to_string(), "127.0.0.1:9092".to_string())];
    let c = BrokerConfig::load(None, env.into_iter()).unwrap();
    assert_eq!(c.kafka_listen, MetricsListen::On("127.0.0.1:9092".parse().unwrap()));
    let c: BrokerConfig = toml::from_str("kafka_listen = \"127.0.0.1:19092\"").unwrap();
    assert_eq!(c.kafka_listen, MetricsListen::On("127.0.0.1:19092".parse().unwrap()));
}

#[test]
fn env_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, "shards = 3\ndata_dir = \"/x\"\n[log]\nsegment_bytes_max = 8192\n")
        .unwrap();
    let env = vec![("BROKER_SHARDS".to_string(), "2".to_string()), ("PATH".into(), "/bin".into())];
    let c = BrokerConfig::load(Some(&path), env.into_iter()).unwrap();
    assert_eq!(c.shards, 2);
    assert_eq!(c.data_dir, PathBuf::from("/x"));
    assert_eq!(c.log.segment_bytes_max, 8192);
}

#[test]
fn segments_stay_within_what_the_index_can_address() {
    let mut c = BrokerConfig::default();
    for (bytes, ok) in [(4095, false), (4096, true), (1 << 32, true), ((1 << 32) + 1, false)] {
        c.log.segment_bytes_max = bytes;
        assert_eq!(c.validate().is_ok(), ok, "segment_bytes_max {bytes}");
    }
}

#[test]
fn offsets_compaction_threshold_from_env_sizes_the_offsets_segments() {
    let c = BrokerConfig::default();
    assert_eq!(c.group_offsets_compact_bytes, GROUP_OFFSETS_COMPACT_BYTES_DEFAULT);
    assert_eq!(c.group_offsets_segment_bytes(), GROUP_OFFSETS_COMPACT_BYTES_DEFAULT);
    let env = |v: &str| vec![("BROKER_GROUP_OFFSETS_COMPACT_BYTES".to_string(), v.to_string())];
    let c = BrokerConfig::load(None, env("1000").into_iter()).unwrap();
    assert_eq!(c.group_offsets_compact_bytes, 1000);
    assert_eq!(c.group_offsets_segment_bytes(), SEGMENT_BYTES_MIN);
    let c = BrokerConfig::load(None, env("0").into_iter()).unwrap();
    assert_eq!(c.group_offsets_segment_bytes(), c.log.segment_bytes_max);
}

#[test]
fn bad_input_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, "shardz = 3\n").unwrap();
    let e = BrokerConfig::load(Some(&path), std::iter::empty()).unwrap_err();
    assert!(e.to_string().contains("shardz"), "{e}");
    let e = BrokerConfig::load(
        None,
        vec![("BROKER_LISTEN".to_string(), "nope".to_string())].into_iter(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("BROKER_LISTEN"), "{e}");
}

#[test]
fn fetch_response_maximum_holds_the_largest_batch() {
    let env = |v: &str| vec![("BROKER_FETCH_RESPONSE_BYTES_MAX".to_string(), v.to_string())];
    let c = BrokerConfig::load(None, env("16777216").into_iter()).unwrap();
    assert_eq!(c.fetch_response_bytes_max, wire::constants::BATCH_BYTES_MAX);
    c.validate().unwrap();
    let c = BrokerConfig::load(None, env("1048576").into_iter()).unwrap();
    let e = c.validate().unwrap_err();
    assert!(e.to_string().contains("fetch_response_bytes_max 1048576 is below"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(&path, "fetch_response_bytes_max = 2147483648\n").unwrap();
    let c = BrokerConfig::load(Some(&path), std::iter::empty()).unwrap();
    let e = c.validate().unwrap_err();
    assert!(e.to_string().contains("exceeds the frame format's limit"), "{e}");
}
