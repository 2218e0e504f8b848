//! The GUI API's `SearchClients` answer as serde types.
//!
//! Velociraptor writes protobuf messages as protojson with the proto field names
//! (snake_case). protojson writes `uint64` as a JSON string but accepts a number too, leaves
//! out empty and zero fields, and parsers must also accept lowerCamelCase names: so every
//! field here is optional and both spellings and encodings parse.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// `api_proto.SearchClientsResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SearchClientsResponse {
    #[serde(default)]
    pub items: Vec<ApiClient>,
    #[serde(default, deserialize_with = "uint64")]
    pub total: u64,
}

/// `api_proto.ApiClient`, the fields the probes read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiClient {
    #[serde(default, alias = "clientId")]
    pub client_id: String,
    #[serde(default, alias = "agentInformation")]
    pub agent_information: AgentInformation,
    #[serde(default, alias = "osInfo")]
    pub os_info: Uname,
    /// Seconds since the epoch on Velociraptor 0.77 (set at enrollment); read it through
    /// [`ApiClient::first_seen_at_us`].
    #[serde(default, alias = "firstSeenAt", deserialize_with = "uint64")]
    pub first_seen_at: u64,
    /// Microseconds since the epoch of the client's last check-in.
    #[serde(default, alias = "lastSeenAt", deserialize_with = "uint64")]
    pub last_seen_at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AgentInformation {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub name: String,
}

/// `api_proto.Uname`; the server fills it by interrogating a new client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Uname {
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub system: String,
}

impl ApiClient {
    /// True when the client checked in within `window` of `now_us` (both microseconds since
    /// the epoch). A check-in slightly in the future (clock skew) counts as fresh.
    pub fn seen_within(&self, now_us: u64, window: Duration) -> bool {
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        self.last_seen_at > 0 && now_us.saturating_sub(self.last_seen_at) <= window_us
    }

    /// True once the server's interrogation filled in the host name and the agent's version:
    /// proof of a collection round-trip, not only a handshake. An enrolled client that is not
    /// yet interrogated already has `last_interrogate_flow_id` but empty `os_info` and
    /// `agent_information`, so the flow id proves nothing.
    pub fn interrogated(&self) -> bool {
        !self.os_info.hostname.trim().is_empty()
            && !self.agent_information.version.trim().is_empty()
    }

    /// `first_seen_at` in microseconds. Velociraptor 0.77 writes seconds here (while
    /// `last_seen_at` is microseconds); a value too large to be seconds is taken as
    /// microseconds already, so a server that changes the unit cannot make it absurd.
    pub fn first_seen_at_us(&self) -> u64 {
        // 10^11 seconds is the year 5138; 10^11 microseconds is 1970-01-02.
        const LARGEST_SECONDS: u64 = 100_000_000_000;
        if self.first_seen_at < LARGEST_SECONDS {
            self.first_seen_at.saturating_mul(1_000_000)
        } else {
            self.first_seen_at
        }
    }
}

/// Parses a protojson `uint64`: a decimal string or a JSON number (or null, read as 0).
fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Uint64;

    impl Visitor<'_> for Uint64 {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a uint64 as a decimal string or a number")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("negative uint64 {v}")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            // protojson allows exponent notation for integers (`1.7e15`).
            if v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64 {
                Ok(v as u64)
            } else {
                Err(E::custom(format!("{v} is not a uint64")))
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(0);
            }
            t.parse::<u64>()
                .map_err(|_| E::custom(format!("`{v}` is not a uint64")))
        }

        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
    }

    d.deserialize_any(Uint64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snake_case_with_string_timestamps() {
        let body = r#"{"items":[{"client_id":"C.0123456789abcdef",
            "agent_information":{"version":"0.77.2","name":"velociraptor"},
            "os_info":{"hostname":"web-1","system":"linux"},
            "first_seen_at":"1700000000000000","last_seen_at":"1700000000500000",
            "labels":["x"],"in_flight_flows":{}}],"total":"1"}"#;
        let r: SearchClientsResponse = serde_json::from_str(body).expect("parses");
        assert_eq!(r.total, 1);
        let c = &r.items[0];
        assert_eq!(c.client_id, "C.0123456789abcdef");
        assert_eq!(c.agent_information.version, "0.77.2");
        assert_eq!(c.os_info.hostname, "web-1");
        assert_eq!(c.first_seen_at, 1_700_000_000_000_000);
        assert_eq!(c.last_seen_at, 1_700_000_000_500_000);
    }

    /// The shape Velociraptor 0.77.2 sends (`services/indexing/clients.go`): seconds in
    /// `first_seen_at`, microseconds in `last_seen_at`, int64 maps as strings, `search_term`
    /// even beside items; and a client that enrolled but is not yet interrogated.
    #[test]
    fn reads_a_velociraptor_0_77_answer_with_a_pending_client() {
        let body = r#"{"search_term":{"query":"all","limit":"100"},"items":[
            {"client_id":"C.1111111111111111","agent_information":{"version":"0.77.2","name":"velociraptor"},
             "os_info":{"system":"linux","hostname":"ct-client-1","release":"ubuntu","machine":"x86_64",
                        "fqdn":"ct-client-1","mac_addresses":["02:00:00:00:00:01"]},
             "first_seen_at":"1764700000","last_seen_at":"1764700123456789","last_ip":"10.0.0.5:41234",
             "labels":[],"in_flight_flows":{"F.C1":"1764700001"},"last_interrogate_flow_id":"F.C1"},
            {"client_id":"C.2222222222222222","first_seen_at":"1764700100",
             "last_seen_at":"1764700120000000","last_interrogate_flow_id":"F.C2"}]}"#;
        let r: SearchClientsResponse = serde_json::from_str(body).expect("parses");
        assert_eq!(r.items.len(), 2);
        let done = &r.items[0];
        assert!(done.interrogated());
        assert_eq!(done.first_seen_at_us(), 1_764_700_000_000_000);
        let pending = &r.items[1];
        assert!(
            !pending.interrogated(),
            "flow id alone is not interrogation"
        );
        // A host name without a version is not done either.
        let mut half = pending.clone();
        half.os_info.hostname = "h".into();
        assert!(!half.interrogated());
    }

    #[test]
    fn first_seen_already_in_microseconds_is_kept() {
        let c = ApiClient {
            first_seen_at: 1_764_700_000_000_000,
            ..ApiClient::default()
        };
        assert_eq!(c.first_seen_at_us(), 1_764_700_000_000_000);
    }

    #[test]
    fn accepts_numbers_camel_case_and_exponents() {
        let body = r#"{"items":[{"clientId":"C.1","agentInformation":{"version":"0.77.2"},
            "osInfo":{"hostname":"h"},"firstSeenAt":1700000000000000,"lastSeenAt":1.7e15}],
            "total":1}"#;
        let r: SearchClientsResponse = serde_json::from_str(body).expect("parses");
        assert_eq!(r.items[0].first_seen_at, 1_700_000_000_000_000);
        assert_eq!(r.items[0].last_seen_at, 1_700_000_000_000_000);
        assert_eq!(r.items[0].os_info.hostname, "h");
    }

    #[test]
    fn empty_message_is_no_clients() {
        let r: SearchClientsResponse = serde_json::from_str("{}").expect("parses");
        assert!(r.items.is_empty());
        assert_eq!(r.total, 0);
        let r: SearchClientsResponse =
            serde_json::from_str(r#"{"items":[{"client_id":"C.1","last_seen_at":null}]}"#)
                .expect("parses");
        assert_eq!(r.items[0].last_seen_at, 0);
        assert!(!r.items[0].interrogated());
    }

    #[test]
    fn rejects_garbage_timestamps() {
        for bad in [r#""soon""#, "-5", "1.5", "true"] {
            let body = format!(r#"{{"items":[{{"last_seen_at":{bad}}}]}}"#);
            assert!(
                serde_json::from_str::<SearchClientsResponse>(&body).is_err(),
                "{bad} must not parse"
            );
        }
    }

    #[test]
    fn freshness_window() {
        let ten_min = Duration::from_secs(600);
        let now = 2_000_000_000_000_000u64;
        let client = |last| ApiClient {
            last_seen_at: last,
            ..ApiClient::default()
        };
        assert!(client(now).seen_within(now, ten_min));
        assert!(
            client(now - 600_000_000).seen_within(now, ten_min),
            "boundary"
        );
        assert!(!client(now - 600_000_001).seen_within(now, ten_min));
        assert!(
            client(now + 5_000_000).seen_within(now, ten_min),
            "clock skew"
        );
        assert!(!client(0).seen_within(now, ten_min), "never seen");
    }
}
