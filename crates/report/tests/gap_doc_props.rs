//! Property: splicing changes nothing outside the marker region, byte for byte.

use cloudtest_report::gap_doc::{splice, BEGIN_MARKER, END_MARKER};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Lines of arbitrary text (including CR, unicode, quoted markers), any line endings.
    proptest::collection::vec(
        prop_oneof![
            "[^\n]{0,40}",
            Just(format!("see `{BEGIN_MARKER}`")),
            Just("\r".to_string()),
            Just(String::new()),
        ],
        0..8,
    )
    .prop_map(|lines| lines.join("\n"))
}

proptest! {
    #[test]
    fn bytes_outside_the_markers_are_identical(
        head in text(), old in text(), tail in text(), region in text(), final_newline in any::<bool>(),
    ) {
        let head = if head.is_empty() { head } else { format!("{head}\n") };
        let old = if old.is_empty() { old } else { format!("{old}\n") };
        let tail_part = if final_newline { format!("{tail}\n") } else { tail.clone() };
        let prefix = format!("{head}{BEGIN_MARKER}\n");
        let suffix = format!("{END_MARKER}\n{tail_part}");
        let doc = format!("{prefix}{old}{suffix}");
        let out = splice(&doc, &region).expect("one well-formed pair");
        prop_assert!(out.starts_with(&prefix));
        prop_assert!(out.ends_with(&suffix));
        // Idempotent: the same region again changes nothing.
        prop_assert_eq!(splice(&out, &region).expect("still well-formed"), out.clone());
    }

    #[test]
    fn documents_without_markers_are_kept_as_a_prefix(doc in text(), region in text()) {
        prop_assume!(!doc.lines().any(|l| l.trim() == BEGIN_MARKER || l.trim() == END_MARKER));
        let out = splice(&doc, &region).expect("appends a pair");
        prop_assert!(out.starts_with(&doc));
        let again = splice(&out, &region).expect("pair now present");
        prop_assert_eq!(again, out);
    }
}
