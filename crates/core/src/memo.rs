//! Parse once what a run hands over again and again: the same template body goes to every
//! region's preflight, create and emulator. The last text and its parse are kept; any other
//! text is parsed afresh (and becomes the kept one). A failed parse is not kept.

use std::sync::{Arc, Mutex, MutexGuard};

/// The last text parsed and what it parsed into.
pub struct LastParsed<T> {
    last: Mutex<Option<(Arc<str>, Arc<T>)>>,
}

impl<T> LastParsed<T> {
    pub const fn new() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }

    /// `text`'s parse: the kept one when `text` is the last text, else `parse`'s.
    pub fn get_or_parse<E>(
        &self,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some((kept, parsed)) = self.lock().as_ref() {
            if **kept == *text {
                return Ok(parsed.clone());
            }
        }
        // Parsed outside the lock: two regions racing on a new text both parse, and either
        // result is the same.
        let parsed = Arc::new(parse(text)?);
        *self.lock() = Some((Arc::from(text), parsed.clone()));
        Ok(parsed)
    }

    fn lock(&self) -> MutexGuard<'_, Option<(Arc<str>, Arc<T>)>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it half-made.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T> Default for LastParsed<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn count_parses(memo: &LastParsed<usize>, text: &str, parses: &Cell<u32>) -> usize {
        let parsed = memo.get_or_parse(text, |t| {
            parses.set(parses.get() + 1);
            Ok::<_, ()>(t.len())
        });
        *parsed.expect("parses")
    }

    #[test]
    fn the_same_text_is_parsed_once_and_another_text_again() {
        let memo = LastParsed::new();
        let parses = Cell::new(0);
        assert_eq!(count_parses(&memo, "abc", &parses), 3);
        assert_eq!(count_parses(&memo, "abc", &parses), 3);
        assert_eq!(parses.get(), 1);
        assert_eq!(count_parses(&memo, "abcd", &parses), 4);
        assert_eq!(parses.get(), 2);
        // Only the last text is kept.
        assert_eq!(count_parses(&memo, "abc", &parses), 3);
        assert_eq!(parses.get(), 3);
    }

    #[test]
    fn a_failed_parse_is_not_kept() {
        let memo: LastParsed<usize> = LastParsed::new();
        let parses = Cell::new(0);
        for _ in 0..2 {
            let e = memo.get_or_parse("bad", |_| {
                parses.set(parses.get() + 1);
                Err("no")
            });
            assert_eq!(e.err(), Some("no"));
        }
        assert_eq!(parses.get(), 2);
    }
}
