//! Slugs of SNMP values for output paths: python-slugify 4 as the original SNMP bot calls it
//! (case kept, `_` allowed), so that paths stay exactly what Grafolean users already have.

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// Turns a value into one path-safe segment, the way the original bot does (contract §5.7):
/// apostrophes become `-`, the text is transliterated to ASCII, HTML entities are decoded,
/// NFKD-normalized, commas between digits are removed, every run of characters outside
/// `0-9A-Za-z_-` becomes `-`, repeated `-` collapse and `-` is trimmed at both ends.
/// The result may be empty (e.g. for `...`); callers must handle that.
pub fn slugify(text: &str) -> String {
    let quoted = replace_quote_runs(text, "-");
    let ascii = deunicode::deunicode_with_tofu(&quoted, "");
    let decoded =
        decode_hexadecimal_references(&decode_decimal_references(&decode_named_entities(&ascii)))
            .into_owned();
    let normalized: String = decoded.nfkd().collect();
    let unquoted = replace_quote_runs(&normalized, "");
    let without_number_commas = remove_commas_between_digits(&unquoted);
    collapse_disallowed(&without_number_commas)
}

fn replace_quote_runs(text: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c == '\'' {
            if !in_run {
                out.push_str(replacement);
            }
            in_run = true;
        } else {
            in_run = false;
            out.push(c);
        }
    }
    out
}

/// `&name;` for the HTML 4 entity names Python's `html.entities.name2codepoint` knows.
fn decode_named_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').and_then(|semi| {
            let name = &after[..semi];
            entity_codepoint(name)
                .and_then(char::from_u32)
                .map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `&#123;`. As in python-slugify, one reference that is not a valid code point cancels the
/// whole pass (Python's `chr` raises and the substitution is abandoned).
fn decode_decimal_references(text: &str) -> Cow<'_, str> {
    decode_numeric_references(text, "&#", 10)
}

/// `&#x1F;`, with the same all-or-nothing rule as the decimal form.
fn decode_hexadecimal_references(text: &str) -> Cow<'_, str> {
    decode_numeric_references(text, "&#x", 16)
}

fn decode_numeric_references<'a>(text: &'a str, prefix: &str, radix: u32) -> Cow<'a, str> {
    if !text.contains(prefix) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(prefix) {
        out.push_str(&rest[..start]);
        let after = &rest[start + prefix.len()..];
        let digits = after.chars().take_while(|c| c.is_digit(radix)).count();
        if digits > 0 && after[digits..].starts_with(';') {
            let code = u32::from_str_radix(&after[..digits], radix).ok();
            match code.filter(|&c| c <= 0x10FFFF) {
                // Python can hold lone surrogates; they end up replaced by `-` later, as this does.
                Some(code) => out.push(char::from_u32(code).unwrap_or('\u{FFFD}')),
                None => return Cow::Borrowed(text),
            }
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[start..start + 1]);
            rest = &rest[start + 1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn remove_commas_between_digits(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_digits = c == ','
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if !between_digits {
            out.push(c);
        }
    }
    out
}

fn collapse_disallowed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let allowed = c.is_ascii_alphanumeric() || c == '_';
        if allowed {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Python's `html.entities.name2codepoint` (the 252 HTML 4 entities).
fn entity_codepoint(name: &str) -> Option<u32> {
    HTML4_ENTITIES
        .iter()
        .find(|(entity, _)| *entity == name)
        .map(|&(_, code)| code)
}

const HTML4_ENTITIES: [(&str, u32); 252] = [
    ("quot", 34),
    ("amp", 38),
    ("lt", 60),
    ("gt", 62),
    ("nbsp", 160),
    ("iexcl", 161),
    ("cent", 162),
    ("pound", 163),
    ("curren", 164),
    ("yen", 165),
    ("brvbar", 166),
    ("sect", 167),
    ("uml", 168),
    ("copy", 169),
    ("ordf", 170),
    ("laquo", 171),
    ("not", 172),
    ("shy", 173),
    ("reg", 174),
    ("macr", 175),
    ("deg", 176),
    ("plusmn", 177),
    ("sup2", 178),
    ("sup3", 179),
    ("acute", 180),
    ("micro", 181),
    ("para", 182),
    ("middot", 183),
    ("cedil", 184),
    ("sup1", 185),
    ("ordm", 186),
    ("raquo", 187),
    ("frac14", 188),
    ("frac12", 189),
    ("frac34", 190),
    ("iquest", 191),
    ("Agrave", 192),
    ("Aacute", 193),
    ("Acirc", 194),
    ("Atilde", 195),
    ("Auml", 196),
    ("Aring", 197),
    ("AElig", 198),
    ("Ccedil", 199),
    ("Egrave", 200),
    ("Eacute", 201),
    ("Ecirc", 202),
    ("Euml", 203),
    ("Igrave", 204),
    ("Iacute", 205),
    ("Icirc", 206),
    ("Iuml", 207),
    ("ETH", 208),
    ("Ntilde", 209),
    ("Ograve", 210),
    ("Oacute", 211),
    ("Ocirc", 212),
    ("Otilde", 213),
    ("Ouml", 214),
    ("times", 215),
    ("Oslash", 216),
    ("Ugrave", 217),
    ("Uacute", 218),
    ("Ucirc", 219),
    ("Uuml", 220),
    ("Yacute", 221),
    ("THORN", 222),
    ("szlig", 223),
    ("agrave", 224),
    ("aacute", 225),
    ("acirc", 226),
    ("atilde", 227),
    ("auml", 228),
    ("aring", 229),
    ("aelig", 230),
    ("ccedil", 231),
    ("egrave", 232),
    ("eacute", 233),
    ("ecirc", 234),
    ("euml", 235),
    ("igrave", 236),
    ("iacute", 237),
    ("icirc", 238),
    ("iuml", 239),
    ("eth", 240),
    ("ntilde", 241),
    ("ograve", 242),
    ("oacute", 243),
    ("ocirc", 244),
    ("otilde", 245),
    ("ouml", 246),
    ("divide", 247),
    ("oslash", 248),
    ("ugrave", 249),
    ("uacute", 250),
    ("ucirc", 251),
    ("uuml", 252),
    ("yacute", 253),
    ("thorn", 254),
    ("yuml", 255),
    ("OElig", 338),
    ("oelig", 339),
    ("Scaron", 352),
    ("scaron", 353),
    ("Yuml", 376),
    ("fnof", 402),
    ("circ", 710),
    ("tilde", 732),
    ("Alpha", 913),
    ("Beta", 914),
    ("Gamma", 915),
    ("Delta", 916),
    ("Epsilon", 917),
    ("Zeta", 918),
    ("Eta", 919),
    ("Theta", 920),
    ("Iota", 921),
    ("Kappa", 922),
    ("Lambda", 923),
    ("Mu", 924),
    ("Nu", 925),
    ("Xi", 926),
    ("Omicron", 927),
    ("Pi", 928),
    ("Rho", 929),
    ("Sigma", 931),
    ("Tau", 932),
    ("Upsilon", 933),
    ("Phi", 934),
    ("Chi", 935),
    ("Psi", 936),
    ("Omega", 937),
    ("alpha", 945),
    ("beta", 946),
    ("gamma", 947),
    ("delta", 948),
    ("epsilon", 949),
    ("zeta", 950),
    ("eta", 951),
    ("theta", 952),
    ("iota", 953),
    ("kappa", 954),
    ("lambda", 955),
    ("mu", 956),
    ("nu", 957),
    ("xi", 958),
    ("omicron", 959),
    ("pi", 960),
    ("rho", 961),
    ("sigmaf", 962),
    ("sigma", 963),
    ("tau", 964),
    ("upsilon", 965),
    ("phi", 966),
    ("chi", 967),
    ("psi", 968),
    ("omega", 969),
    ("thetasym", 977),
    ("upsih", 978),
    ("piv", 982),
    ("ensp", 8194),
    ("emsp", 8195),
    ("thinsp", 8201),
    ("zwnj", 8204),
    ("zwj", 8205),
    ("lrm", 8206),
    ("rlm", 8207),
    ("ndash", 8211),
    ("mdash", 8212),
    ("lsquo", 8216),
    ("rsquo", 8217),
    ("sbquo", 8218),
    ("ldquo", 8220),
    ("rdquo", 8221),
    ("bdquo", 8222),
    ("dagger", 8224),
    ("Dagger", 8225),
    ("bull", 8226),
    ("hellip", 8230),
    ("permil", 8240),
    ("prime", 8242),
    ("Prime", 8243),
    ("lsaquo", 8249),
    ("rsaquo", 8250),
    ("oline", 8254),
    ("frasl", 8260),
    ("euro", 8364),
    ("image", 8465),
    ("weierp", 8472),
    ("real", 8476),
    ("trade", 8482),
    ("alefsym", 8501),
    ("larr", 8592),
    ("uarr", 8593),
    ("rarr", 8594),
    ("darr", 8595),
    ("harr", 8596),
    ("crarr", 8629),
    ("lArr", 8656),
    ("uArr", 8657),
    ("rArr", 8658),
    ("dArr", 8659),
    ("hArr", 8660),
    ("forall", 8704),
    ("part", 8706),
    ("exist", 8707),
    ("empty", 8709),
    ("nabla", 8711),
    ("isin", 8712),
    ("notin", 8713),
    ("ni", 8715),
    ("prod", 8719),
    ("sum", 8721),
    ("minus", 8722),
    ("lowast", 8727),
    ("radic", 8730),
    ("prop", 8733),
    ("infin", 8734),
    ("ang", 8736),
    ("and", 8743),
    ("or", 8744),
    ("cap", 8745),
    ("cup", 8746),
    ("int", 8747),
    ("there4", 8756),
    ("sim", 8764),
    ("cong", 8773),
    ("asymp", 8776),
    ("ne", 8800),
    ("equiv", 8801),
    ("le", 8804),
    ("ge", 8805),
    ("sub", 8834),
    ("sup", 8835),
    ("nsub", 8836),
    ("sube", 8838),
    ("supe", 8839),
    ("oplus", 8853),
    ("otimes", 8855),
    ("perp", 8869),
    ("sdot", 8901),
    ("lceil", 8968),
    ("rceil", 8969),
    ("lfloor", 8970),
    ("rfloor", 8971),
    ("lang", 9001),
    ("rang", 9002),
    ("loz", 9674),
    ("spades", 9824),
    ("clubs", 9827),
    ("hearts", 9829),
    ("diams", 9830),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_examples() {
        assert_eq!(slugify("asdf.QWER"), "asdf-QWER");
        assert_eq!(slugify("Core 6"), "Core-6");
        assert_eq!(slugify("GigabitEthernet0/0.100"), "GigabitEthernet0-0-100");
        assert_eq!(slugify("1,000"), "1000");
        assert_eq!(slugify("a__b"), "a__b");
        assert_eq!(slugify("..."), "");
    }

    #[test]
    fn apostrophes_and_quotes() {
        assert_eq!(slugify("it's"), "it-s");
        assert_eq!(slugify("a''b"), "a-b");
        // A typographic apostrophe transliterates to `'`, which the post-processing removes.
        assert_eq!(slugify("it\u{2019}s"), "its");
    }

    #[test]
    fn transliteration_and_normalization() {
        assert_eq!(slugify("Über Straße"), "Uber-Strasse");
        assert_eq!(slugify("čćžšđ"), "cczsd");
        assert_eq!(slugify("eth0 (uplink)"), "eth0-uplink");
        assert_eq!(slugify("  -lo- "), "lo");
    }

    #[test]
    fn html_entities() {
        assert_eq!(slugify("a&amp;b"), "a-b");
        assert_eq!(slugify("caf&eacute;"), "cafe");
        assert_eq!(slugify("x&sup2;"), "x2");
        assert_eq!(slugify("&#65;&#x42;c"), "ABc");
        assert_eq!(slugify("&unknown;x"), "unknown-x");
        // An out-of-range reference abandons the whole decimal pass, as Python does.
        assert_eq!(slugify("&#65;&#99999999;"), "65-99999999");
    }

    #[test]
    fn commas_only_between_digits() {
        assert_eq!(slugify("1,000,000 bytes"), "1000000-bytes");
        assert_eq!(slugify("a,b"), "a-b");
        assert_eq!(slugify("1, 2"), "1-2");
    }

    #[test]
    fn entity_table_is_complete() {
        let mut names: Vec<&str> = HTML4_ENTITIES.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 252);
    }
}
