//! Where a TOML parser's byte offsets fall in the file, for errors that name a line.
//!
//! Settings and rule files both report problems as `file:line`; `toml` gives byte spans, and this turns them
//! into 1-based line numbers.

/// 1-based line number of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::line_of;

    #[test]
    fn offsets_map_to_their_line() {
        let text = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, 13), 4);
        assert_eq!(line_of(text, 10_000), 4);
    }
}
