//! A value that must never reach logs, reports or the gap document.

use std::fmt;

/// Holds a secret (admin password, key). `Debug` and `Display` print `[redacted]`, and it
/// implements neither `Serialize` nor `Clone`-into-`String` by accident: reading it takes an
/// explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (a NoEcho parameter, an
    /// Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh random password of `len` characters (letters and digits, at least one of
    /// each class), suitable for a template's admin-password parameter.
    pub fn generate_password(len: usize) -> Self {
        use rand::Rng;
        const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
        const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
        const DIGIT: &[u8] = b"23456789";
        let len = len.max(4);
        let mut rng = rand::thread_rng();
        let all: Vec<u8> = [LOWER, UPPER, DIGIT].concat();
        let mut out: Vec<u8> = (0..len).map(|_| all[rng.gen_range(0..all.len())]).collect();
        // Guarantee every class appears (ARM and most password policies ask for it).
        out[0] = UPPER[rng.gen_range(0..UPPER.len())];
        out[1] = LOWER[rng.gen_range(0..LOWER.len())];
        out[2] = DIGIT[rng.gen_range(0..DIGIT.len())];
        Self(String::from_utf8_lossy(&out).into_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn generated_passwords_are_long_mixed_and_distinct() {
        let a = Secret::generate_password(28);
        let b = Secret::generate_password(28);
        assert_eq!(a.expose().len(), 28);
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().chars().any(|c| c.is_ascii_uppercase()));
        assert!(a.expose().chars().any(|c| c.is_ascii_lowercase()));
        assert!(a.expose().chars().any(|c| c.is_ascii_digit()));
    }
}
