//! Last line of defence for secrets: every log line and display line passes through here,
//! and any registered secret (in its plain, URL-encoded and JSON-escaped forms) is replaced.
//! The primary rule stays: secrets are `Secret` values and never formatted.

use std::io::Write;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value to be masked wherever it would be printed.
pub fn register(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut forms = vec![secret.to_string()];
    let url: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    forms.push(url);
    if let Ok(json) = serde_json::to_string(secret) {
        forms.push(json.trim_matches('"').to_string());
    }
    let mut guard = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for f in forms {
        if !guard.contains(&f) {
            guard.push(f);
        }
    }
}

/// `text` with every registered secret replaced by `[redacted]`.
pub fn redact(text: &str) -> String {
    let guard = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for s in guard.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[redacted]");
        }
    }
    out
}

/// A writer for tracing-subscriber that redacts each write to stderr.
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_in_all_forms() {
        register("p@ss word+\"x\"-unique-1");
        let line = "body=AdminPassword=p%40ss%20word%2B%22x%22-unique-1 json={\"v\":\"p@ss word+\\\"x\\\"-unique-1\"} raw p@ss word+\"x\"-unique-1";
        let out = redact(line);
        assert!(!out.contains("unique-1"), "{out}");
        assert_eq!(out.matches("[redacted]").count(), 3, "{out}");
    }
}
