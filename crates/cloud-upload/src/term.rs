//! Text for the terminal: what a server (or a crafted file) says is printed with its control
//! characters and bidirectional overrides escaped, so that an object key or an error message
//! cannot move the cursor, recolour the screen, rewrite the title, or reorder what is shown.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as is: C0 controls, DEL, C1 controls, and the
/// bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_into(out: &mut String, c: char) {
    let _ = match u32::from(c) {
        n @ 0..=0x7f => write!(out, "\\x{n:02x}"),
        n => write!(out, "\\u{{{n:x}}}"),
    };
}

/// One field (a key, a name, an id): every unsafe character escaped, newlines included, as
/// `\x1b` or `\u{202e}`.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A message of several lines (an error with its hint): the newlines stay, everything else
/// unsafe is escaped as in [`escape`].
pub(crate) fn message(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && unsafe_char(c)) {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(escape).collect();
    Cow::Owned(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_bidi_overrides_are_escaped() {
        assert_eq!(escape("plain/key name.bin"), "plain/key name.bin");
        assert_eq!(escape("red\x1b[31mkey"), "red\\x1b[31mkey");
        assert_eq!(escape("a\nb\tc\x7f\u{9b}d"), "a\\x0ab\\x09c\\x7f\\u{9b}d");
        assert_eq!(escape("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(escape("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(escape("日本語 ключ"), "日本語 ключ");
        assert_eq!(message("first\x07\nsecond \x1b]0;title\x07"), "first\\x07\nsecond \\x1b]0;title\\x07");
    }
}
