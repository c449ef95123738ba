//! Maps keyed by a name yardctl shows — counters, drop reasons, timeouts —
//! travel with snake_case keys, like every other JSON field
//! (`gw_forwarded`, `spoofed_mac`, `tcp_established`), and are kebab-case
//! in memory and in yardctl's tables (`gw-forwarded`, …): `-` and `_` swap
//! on the way through. Use with `#[serde(with = "names::snake_keys")]`;
//! connection states, which `conntrack ls` shows in capitals, with
//! `names::state_keys` (lowercase on the wire).

/// The serde functions for a `BTreeMap<String, u64>` keyed by names.
pub mod snake_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the map with `-` in its keys as `_`.
    pub fn serialize<S: Serializer>(map: &BTreeMap<String, u64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.replace('-', "_"), v)))
    }

    /// Reads the map back with `_` in its keys as `-`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
        let wire = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(wire
            .into_iter()
            .map(|(k, v)| (k.replace('_', "-"), v))
            .collect())
    }
}

/// The serde functions for a map keyed by connection state names
/// (`ESTABLISHED`, `TIME_WAIT`, as `conntrack ls` shows them): lowercase
/// on the wire (`established`, `time_wait`), uppercase in memory.
pub mod state_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the map with its keys in lowercase.
    pub fn serialize<S: Serializer>(map: &BTreeMap<String, u64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)))
    }

    /// Reads the map back with its keys in uppercase.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
        let wire = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(wire
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Counters {
        #[serde(with = "super::snake_keys")]
        drops: BTreeMap<String, u64>,
    }

    #[test]
    fn names_are_snake_case_on_the_wire_and_kebab_case_in_memory() {
        let c = Counters {
            drops: BTreeMap::from([("spoofed-mac".to_string(), 3)]),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"drops":{"spoofed_mac":3}}"#);
        assert_eq!(serde_json::from_str::<Counters>(&json).unwrap(), c);
    }
}
