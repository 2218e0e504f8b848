//! What `mock-state.json` holds: every emulated resource still present, per emulator.

use serde_json::{json, Value};

pub trait EmulatorState: Send + Sync {
    /// `aws`, `azure` or `velociraptor`.
    fn name(&self) -> &'static str;
    /// Resources still present, each an object with at least `type` and `id` (and `tags`
    /// where the cloud has them).
    fn remaining(&self) -> Vec<Value>;
}

/// The document written to `OUT/mock-state.json`.
pub fn snapshot(emulators: &[&dyn EmulatorState]) -> Value {
    let mut map = serde_json::Map::new();
    for e in emulators {
        map.insert(e.name().to_string(), Value::Array(e.remaining()));
    }
    json!(map)
}

/// True when no emulator holds anything.
pub fn is_empty(snapshot: &Value) -> bool {
    snapshot
        .as_object()
        .map(|m| {
            m.values()
                .all(|v| v.as_array().is_none_or(|a| a.is_empty()))
        })
        .unwrap_or(true)
}
