//! Progress lines from a poll loop, reported only when what is seen changes.

use std::sync::Mutex;

/// Where progress goes: the phase context in a lifecycle, `tracing` for `cloudtest probe`.
pub type ProgressFn<'a> = &'a (dyn Fn(String) + Send + Sync);

pub(crate) struct Progress<'a> {
    sink: ProgressFn<'a>,
    last: Mutex<Option<String>>,
}

impl<'a> Progress<'a> {
    pub fn new(sink: ProgressFn<'a>) -> Self {
        Self {
            sink,
            last: Mutex::new(None),
        }
    }

    /// Reports `seen` unless it repeats the previous line.
    pub fn note(&self, seen: &str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(seen) {
            *last = Some(seen.to_string());
            (self.sink)(seen.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped() {
        let lines = Mutex::new(Vec::new());
        let sink = |s: String| lines.lock().expect("lock").push(s);
        let p = Progress::new(&sink);
        for s in ["HTTP 503", "HTTP 503", "HTTP 200", "HTTP 503"] {
            p.note(s);
        }
        assert_eq!(
            *lines.lock().expect("lock"),
            vec!["HTTP 503", "HTTP 200", "HTTP 503"]
        );
    }
}
