//! How status strings are compared: the same word written two ways is the same status.

/// The comparison form of a status string or a carrier code: trimmed, runs of whitespace (and
/// the Persian zero-width non-joiner) as one space, ASCII letters lower-cased, Persian and
/// Arabic-Indic digits as ASCII digits, the Arabic letters kaf/yeh that Persian text often
/// carries (Frotel's own documentation writes «بانك» with the Arabic kaf) as their Persian
/// forms, and the tatweel dropped.
pub fn normalise(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for ch in raw.chars() {
        let ch = match ch {
            '\u{200C}' => ' ',
            '\u{0640}' => continue,
            '\u{0643}' => '\u{06A9}',
            '\u{064A}' | '\u{0649}' => '\u{06CC}',
            '\u{06F0}'..='\u{06F9}' => digit(ch as u32 - 0x06F0),
            '\u{0660}'..='\u{0669}' => digit(ch as u32 - 0x0660),
            other => other.to_ascii_lowercase(),
        };
        if ch.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(ch);
    }
    out
}

fn digit(value: u32) -> char {
    char::from_digit(value, 10).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn spellings_of_one_status_compare_equal() {
        assert_eq!(normalise("  IN_TRANSIT \n"), "in_transit");
        assert_eq!(normalise("تحویل\u{200C}شده"), normalise("تحویل  شده"));
        assert_eq!(normalise("بانك"), normalise("بانک"));
        assert_eq!(normalise("تحويل شده"), normalise("تحویل شده"));
        assert_eq!(normalise("۶"), "6");
        assert_eq!(normalise("٦"), "6");
        assert_eq!(normalise("-99"), "-99");
        assert_eq!(normalise("معـلق"), normalise("معلق"));
        assert_eq!(normalise(""), "");
        assert_eq!(normalise(" \u{200C} "), "");
    }

    proptest::proptest! {
        #[test]
        fn normalising_is_idempotent(raw in "\\PC{0,40}") {
            let once = normalise(&raw);
            proptest::prop_assert_eq!(normalise(&once), once);
        }
    }
}
