//! Text that comes from the project or from the sandbox (file names, host names, request
//! lines), made safe to print: a file name carrying terminal escape codes must not reach the
//! terminal, where it could retitle the window, rewrite what is shown, or worse.

use std::ffi::OsStr;
use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) and every byte that is not UTF-8 escaped
/// (`\e`, `\n`, `\x9b`, ...); a backslash becomes `\\` so an escape cannot be faked.
/// Printable text, non-ASCII letters included, stays as it is: the name is still recognisable.
pub fn printable(s: &OsStr) -> String {
    escape(s, true)
}

fn escape(s: &OsStr, backslash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for chunk in s.as_encoded_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' if backslash => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x1b' => out.push_str("\\e"),
                // Bidirectional overrides and invisible format characters make a name
                // display as something else (U+202E turns `exe.txt` around).
                c if c.is_control()
                    || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}') =>
                {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `printable` for text already known to be a `str`.
pub fn printable_str(s: &str) -> String {
    printable(OsStr::new(s))
}

/// For agentbox's own messages (errors, hints, warnings, notes), each printed as one line,
/// whose text may quote a path it did not escape itself: every control character is escaped,
/// line breaks included, so a name from the sandbox can neither send the terminal a command
/// nor start a line of its own (a fake `hint:` with a command to copy). Backslashes stay
/// (what `printable` made is not escaped twice).
pub fn terminal(s: &str) -> String {
    escape(OsStr::new(s), false)
}

/// Quotes for a POSIX-ish shell; bytes that are not UTF-8 or not printable use bash's `$'...'`,
/// so a command agentbox suggests (a hint, `--dry-run`) names the real path, and a name from the
/// sandbox can neither run as shell code nor put a control character on the terminal.
pub fn shell_quote(s: &OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    match s.to_str() {
        Some(t) if !t.chars().any(char::is_control) => shell_words::quote(t).into_owned(),
        _ => {
            let mut out = String::from("$'");
            for &byte in s.as_bytes() {
                match byte {
                    b'\'' | b'\\' => {
                        out.push('\\');
                        out.push(byte as char);
                    }
                    0x20..=0x7e => out.push(byte as char),
                    _ => out.push_str(&format!("\\x{byte:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn escapes_controls_keeps_the_rest() {
        for (input, want) in [
            (&b"plain.env"[..], "plain.env"),
            (b"\x1b]0;pwned\x07.env", "\\e]0;pwned\\u{7}.env"),
            (b"a\nb\rc\td", "a\\nb\\rc\\td"),
            (b"back\\slash", "back\\\\slash"),
            (b"\x7f", "\\u{7f}"),
            ("\u{9b}31m".as_bytes(), "\\u{9b}31m"),
            (b"bad\xffutf8", "bad\\xffutf8"),
            ("caf\u{e9} $`&".as_bytes(), "caf\u{e9} $`&"),
            ("a\u{202e}txt.exe".as_bytes(), "a\\u{202e}txt.exe"),
        ] {
            let got = printable(OsStr::from_bytes(input));
            assert_eq!(got, want, "{input:?}");
            assert!(!got.bytes().any(|b| b.is_ascii_control()), "{got:?}");
        }
        assert_eq!(terminal("a\x1b[2J\nhint: b\x07"), "a\\e[2J\\nhint: b\\u{7}");
        let once = printable(OsStr::from_bytes(b"x\x1by"));
        assert_eq!(terminal(&once), once);
    }
}
