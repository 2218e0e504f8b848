//! Binds the CA the probes will trust to the server instance.
//!
//! The server publishes its CA through a wait-condition handle, a pre-signed URL that anyone
//! able to call `DescribeStackResources` in the account can read and signal first. The
//! server's boot script also prints `cloudtest-ca-sha256=<fingerprint>` to its serial
//! console, which only EC2 itself writes and `GetConsoleOutput` reads back. The two must
//! agree before the probes trust the CA.

use cloudtest_core::outputs::normalise_fingerprint;

/// The marker the boot script prints (templates-cfn/scripts/server-boot.sh).
pub const CA_CONSOLE_MARKER: &str = "cloudtest-ca-sha256=";

/// What `health` says when the two CAs differ (issue 15 §4).
pub const CA_MISMATCH: &str =
    "the CA published through the wait condition does not match the one the server printed on its console";

/// How the server's identity is checked; chosen by the caller from where the API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityCheck {
    /// Read the server's console and compare (AWS, the embedded emulator).
    Console,
    /// The endpoint's console output is not the instance's (moto returns canned text):
    /// report the check as not verifiable, with this reason.
    NotVerifiable(String),
}

/// The fingerprint the console printed last (a reboot prints it again), normalised.
pub fn console_fingerprint(console: &str) -> Option<String> {
    console.lines().rev().find_map(|line| {
        let at = line.find(CA_CONSOLE_MARKER)?;
        let value = line[at + CA_CONSOLE_MARKER.len()..].trim();
        let value: String = value
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
            .collect();
        (!value.is_empty()).then(|| normalise_fingerprint(&value))
    })
}

/// Whether an id is (or holds) a pre-signed URL, which must never reach facts, results,
/// logs or evidence: a wait-condition handle's physical id is one.
pub fn is_presigned_url(id: &str) -> bool {
    let lower = id.to_ascii_lowercase();
    lower.contains("://") || lower.contains("x-amz-signature") || lower.contains("signature=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_console_fingerprint_wins_and_is_normalised() {
        let console = "[   5.1] cloud-init[812]: cloudtest-boot: downloading\n\
            [  20.3] cloud-init[812]: cloudtest-ca-sha256=AB:CD:01\n\
            noise\n\
            [  90.3] cloud-init[812]: cloudtest-ca-sha256=abcd02  trailing\r\n";
        assert_eq!(console_fingerprint(console), Some("ab:cd:02".to_string()));
        assert_eq!(console_fingerprint("no marker here\n"), None);
        assert_eq!(console_fingerprint("cloudtest-ca-sha256=\n"), None);
    }

    #[test]
    fn presigned_urls_are_recognised() {
        assert!(is_presigned_url(
            "https://cloudformation-waitcondition-us-east-1.s3.amazonaws.com/arn%3Aaws?X-Amz-Signature=abc"
        ));
        assert!(!is_presigned_url("i-0123456789abcdef0"));
        assert!(!is_presigned_url(
            "arn:aws:cloudformation:us-east-1:1:stack/x/y"
        ));
    }
}
