//! The bad-input campaign: a committed list of nasty requests, each of which must get a 4xx in the
//! contract's error format with a message that says what is wrong (never a 500, never a panic);
//! and property tests over JSON decoding, validation and key building.

use axum::body::Body;
use axum::http::Request;
use flowpipe_api::HttpSettings;
use flowpipe_core::keys::{FLOWS_PREFIX, FlowKeys, parse_flow_key};
use flowpipe_core::{FlowName, VersionNumber};
use flowpipe_store::Store;
use proptest::prelude::*;

use crate::rest::Api;
use flowpipe_testkit::both;

/// One nasty request: what it is, the request, the status it must get, and words the error
/// message must contain.
struct Nasty {
    what: &'static str,
    method: &'static str,
    path: String,
    body: Vec<u8>,
    status: u16,
    says: &'static str,
}

fn nasty(
    what: &'static str,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    says: &'static str,
) -> Nasty {
    Nasty {
        what,
        method: "POST",
        path: path.to_string(),
        body: body.into(),
        status,
        says,
    }
}

fn stages(n: usize) -> String {
    let s: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"s{i}","type":"t","threads":1}}"#))
        .collect();
    format!(r#"{{"name":"many","stages":[{}]}}"#, s.join(","))
}

fn nasty_inputs() -> Vec<Nasty> {
    let deep = format!(
        r#"{{"name":"deep","stages":[{{"name":"s","type":"t","threads":1,"config":{{"a":{}1{}}}}}]}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let deep_objects = format!(
        r#"{{"name":"deep","stages":[{{"name":"s","type":"t","threads":1,"config":{}1{}}}]}}"#,
        r#"{"a":"#.repeat(200),
        "}".repeat(200)
    );
    let mut invalid_utf8 = br#"{"name":"bad"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0x80]);
    invalid_utf8.extend_from_slice(br#""}"#);
    let lone_surrogate = br#"{"name":"\ud800x"}"#.to_vec();
    vec![
        nasty(
            "config nested 50,000 deep",
            "/v1/flows",
            deep,
            400,
            "recursion limit",
        ),
        nasty(
            "config objects nested 200 deep",
            "/v1/flows",
            deep_objects,
            400,
            "recursion limit",
        ),
        nasty(
            "a 2 MiB string (over the body limit)",
            "/v1/flows",
            format!(r#"{{"name":"{}"}}"#, "a".repeat(2 * 1024 * 1024)),
            413,
            "larger",
        ),
        nasty(
            "a 600 KiB name",
            "/v1/flows",
            format!(r#"{{"name":"{}"}}"#, "a".repeat(600 * 1024)),
            400,
            "at most 63",
        ),
        nasty(
            "a 300 KiB stage type is fine but a 300 KiB stage name is not",
            "/v1/flows",
            format!(
                r#"{{"name":"big","stages":[{{"name":"{}","type":"t","threads":1}}]}}"#,
                "s".repeat(300 * 1024)
            ),
            400,
            "at most 253",
        ),
        nasty(
            "invalid UTF-8 in a string",
            "/v1/flows",
            invalid_utf8,
            400,
            "not valid JSON",
        ),
        nasty(
            "a lone UTF-16 surrogate escape",
            "/v1/flows",
            lone_surrogate,
            400,
            "not valid JSON",
        ),
        nasty(
            "../ in a name",
            "/v1/flows",
            r#"{"name":"../etc"}"#,
            400,
            "DNS-1123",
        ),
        nasty(
            "/ in a name",
            "/v1/flows",
            r#"{"name":"a/b"}"#,
            400,
            "DNS-1123",
        ),
        nasty(
            "NUL in a name",
            "/v1/flows",
            r#"{"name":"a\u0000b"}"#,
            400,
            "DNS-1123",
        ),
        nasty(
            "NUL in a queue name",
            "/v1/flows",
            r#"{"name":"n","queues":[{"name":"q\u0000"}]}"#,
            400,
            "may contain only",
        ),
        nasty(
            "threads beyond u32",
            "/v1/flows",
            r#"{"name":"n","stages":[{"name":"s","type":"t","threads":4294967296}]}"#,
            400,
            "threads",
        ),
        nasty(
            "negative capacity",
            "/v1/flows",
            r#"{"name":"n","queues":[{"name":"q","capacity":-1}]}"#,
            400,
            "capacity",
        ),
        nasty(
            "a fractional thread count",
            "/v1/flows",
            r#"{"name":"n","stages":[{"name":"s","type":"t","threads":1.5}]}"#,
            400,
            "threads",
        ),
        nasty(
            "a version beyond u64",
            "/v1/flows",
            r#"{"name":"n","version":"18446744073709551616"}"#,
            400,
            "version",
        ),
        nasty(
            "a client-chosen version",
            "/v1/flows",
            r#"{"name":"n","version":7}"#,
            400,
            "server assigns",
        ),
        nasty(
            "an unknown enum name",
            "/v1/flows",
            r#"{"name":"n","execution":{"mode":"FAST"}}"#,
            400,
            "FAST",
        ),
        nasty(
            "a number too large for JSON doubles in config",
            "/v1/flows",
            r#"{"name":"n","stages":[{"name":"s","type":"t","threads":1,"config":{"x":1e999}}]}"#,
            400,
            "stages[0].config[\"x\"]: number 1e999 is out of range",
        ),
        nasty(
            "duplicate top-level keys",
            "/v1/flows",
            r#"{"name":"a","name":"b"}"#,
            400,
            "duplicate key `name`",
        ),
        nasty(
            "duplicate keys deep in config",
            "/v1/flows",
            r#"{"name":"a","stages":[{"name":"s","type":"t","threads":1,"config":{"k":{"x":1,"x":2}}}]}"#,
            400,
            "duplicate key `x`",
        ),
        nasty(
            "duplicate label keys",
            "/v1/flows",
            r#"{"name":"a","labels":{"k":"1","k":"2"}}"#,
            400,
            "duplicate key `k`",
        ),
        nasty(
            "10,000 stages",
            "/v1/flows",
            stages(10_000),
            400,
            "at most 1024 stages",
        ),
        nasty(
            "an unknown field",
            "/v1/flows",
            r#"{"name":"n","replicas":3}"#,
            400,
            "replicas",
        ),
        nasty("a JSON array body", "/v1/flows", "[]", 400, "FlowSpec"),
        nasty(
            "a JSON string body",
            "/v1/flows",
            r#""flow""#,
            400,
            "FlowSpec",
        ),
        nasty(
            "trailing garbage",
            "/v1/flows",
            r#"{"name":"n"} {}"#,
            400,
            "trailing",
        ),
        nasty("an empty body", "/v1/flows", "", 400, "empty"),
        nasty(
            "a byte-order mark",
            "/v1/flows",
            "\u{feff}{\"name\":\"n\"}",
            400,
            "not valid JSON",
        ),
        nasty(
            "null for a message",
            "/v1/flows",
            r#"{"name":"n","stages":[null]}"#,
            400,
            "stages[0]",
        ),
        Nasty {
            what: "%2F in a path name",
            method: "GET",
            path: "/v1/flows/..%2F..%2Fetc".into(),
            body: Vec::new(),
            status: 400,
            says: "DNS-1123",
        },
        Nasty {
            what: "a NUL in a path name",
            method: "GET",
            path: "/v1/flows/a%00b".into(),
            body: Vec::new(),
            status: 400,
            says: "DNS-1123",
        },
        Nasty {
            what: "a version out of range in a path",
            method: "POST",
            path: "/v1/flows/x/rollback/99999999999999999999999".into(),
            body: Vec::new(),
            status: 400,
            says: "version",
        },
        Nasty {
            what: "a huge page size is capped, a negative one is not",
            method: "GET",
            path: "/v1/flows?page_size=-2147483648".into(),
            body: Vec::new(),
            status: 400,
            says: "negative",
        },
        Nasty {
            what: "a page size beyond i32",
            method: "GET",
            path: "/v1/flows?page_size=99999999999".into(),
            body: Vec::new(),
            status: 400,
            says: "32-bit",
        },
        Nasty {
            what: "a forged page token",
            method: "GET",
            path: "/v1/flows?page_token=eyJrIjoiZmxvd3MiLCJyIjo5OTk5OTk5OTksImEiOiJ6In0".into(),
            body: Vec::new(),
            status: 400,
            says: "page_token",
        },
    ]
}

async fn every_nasty_input_gets_a_clear_4xx(store: Store) {
    let api = Api::with(store, HttpSettings::default());
    for n in nasty_inputs() {
        let req = Request::builder()
            .method(n.method)
            .uri(&n.path)
            .header("content-type", "application/json")
            .body(Body::from(n.body))
            .unwrap();
        let r = api.raw(req).await;
        assert_eq!(r.status.as_u16(), n.status, "{}: {}", n.what, r.json);
        let message = r.json["message"].as_str().unwrap_or_default();
        let details = r.json["details"].to_string();
        assert!(
            message.contains(n.says) || details.contains(n.says),
            "{}: the error should say {:?}: {}",
            n.what,
            n.says,
            r.json
        );
        assert!(message.len() < 2000, "{}: message too long", n.what);
    }
}

both!(every_nasty_input_gets_a_clear_4xx);

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Any bytes: decoding and validation never panic, and whatever passes names a flow whose
    /// keys stay under its own prefix.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(spec) = flowpipe_core::json::decode_flow_spec(&body)
            && let Ok(valid) = flowpipe_core::ValidSpec::for_create(spec)
        {
            assert_keys_stay_in_prefix(valid.name());
        }
    }

    /// JSON-shaped bodies with hostile strings in every name position.
    #[test]
    fn hostile_names_never_escape_their_prefix(
        name in "\\PC{0,80}",
        queue in "\\PC{0,40}",
        stage in "\\PC{0,40}",
        threads in any::<i64>(),
    ) {
        let body = serde_json::json!({
            "name": name,
            "queues": [{"name": queue}],
            "stages": [{"name": stage, "type": "t", "threads": threads, "inputQueue": queue}],
        });
        if let Ok(spec) = flowpipe_core::json::decode_flow_spec(body.to_string().as_bytes())
            && let Ok(valid) = flowpipe_core::ValidSpec::for_create(spec)
        {
            prop_assert_eq!(valid.name().as_str(), name.as_str());
            assert_keys_stay_in_prefix(valid.name());
        }
    }

    /// Any string either is a valid flow name or is refused; valid ones parse back from keys.
    #[test]
    fn flow_names_and_keys_round_trip(name in "[a-z0-9./\\-_\\x00]{0,70}") {
        if let Ok(n) = FlowName::parse(&name) {
            assert_keys_stay_in_prefix(&n);
        } else {
            prop_assert!(name.is_empty() || name.len() > 63
                || name.contains(['/', '.', '_', '\0'])
                || name.starts_with('-') || name.ends_with('-'));
        }
    }
}

fn assert_keys_stay_in_prefix(name: &FlowName) {
    let keys = FlowKeys::new(name);
    let prefix = format!("{FLOWS_PREFIX}{name}/");
    let v = VersionNumber::new(123).unwrap();
    for key in [
        keys.active(),
        keys.meta(),
        keys.status(),
        keys.version_spec(v),
        keys.version_meta(v),
    ] {
        assert!(
            key.starts_with(prefix.as_bytes()),
            "{key:?} outside {prefix}"
        );
        assert!(key.as_slice() < keys.subtree_end().as_slice());
        let (parsed, _) = parse_flow_key(&key).expect("our own keys parse");
        assert_eq!(&parsed, name);
    }
}
