//! Code point classes as llama.cpp's `unicode.cpp` sees them, plus GPT-2's
//! `bytes_to_unicode` table.
//!
//! llama.cpp derives its flags from the Unicode general category (`\p{L}`,
//! `\p{N}`, `\p{P}`, ...) and the `White_Space` property; we take the same two
//! sources from `unicode-general-category` and `char::is_whitespace`.

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// The subset of llama.cpp's `unicode_cpt_flags` that the pre-tokenizers read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CptFlags {
    pub letter: bool,
    pub number: bool,
    pub whitespace: bool,
    pub punctuation: bool,
    pub symbol: bool,
    /// false only for positions outside the fragment (llama.cpp's `as_uint() == 0`).
    pub defined: bool,
}

pub fn cpt_flags(c: char) -> CptFlags {
    let gc = get_general_category(c);
    CptFlags {
        letter: matches!(
            gc,
            Gc::UppercaseLetter | Gc::LowercaseLetter | Gc::TitlecaseLetter | Gc::ModifierLetter | Gc::OtherLetter
        ),
        number: matches!(gc, Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber),
        whitespace: c.is_whitespace(),
        punctuation: matches!(
            gc,
            Gc::ConnectorPunctuation
                | Gc::DashPunctuation
                | Gc::OpenPunctuation
                | Gc::ClosePunctuation
                | Gc::InitialPunctuation
                | Gc::FinalPunctuation
                | Gc::OtherPunctuation
        ),
        symbol: matches!(gc, Gc::MathSymbol | Gc::CurrencySymbol | Gc::ModifierSymbol | Gc::OtherSymbol),
        defined: true,
    }
}

/// GPT-2's `bytes_to_unicode`: bytes 33..=126, 161..=172 and 174..=255 map to
/// themselves; the other 68 bytes map to U+0100.. in byte order (space -> `Ġ`).
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let keep = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let cp = if keep {
            b
        } else {
            n += 1;
            255 + n
        };
        // All values are below U+0200, so always valid scalar values.
        table[b as usize] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table_matches_known_points() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[0], '\u{100}');
        assert_eq!(t[0xAD], '\u{143}');
        let mut seen = std::collections::HashSet::new();
        assert!(t.iter().all(|c| seen.insert(*c)), "table must be a bijection");
    }

    #[test]
    fn flags_follow_general_category() {
        assert!(cpt_flags('é').letter);
        assert!(cpt_flags('日').letter);
        assert!(cpt_flags('٣').number);
        assert!(cpt_flags('\u{3000}').whitespace);
        assert!(cpt_flags('!').punctuation);
        assert!(cpt_flags('$').symbol);
        assert!(!cpt_flags('\u{301}').letter, "combining marks are not letters");
    }
}
