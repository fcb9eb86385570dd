//! Keeping the bot token out of logs and error messages: it travels in the `b` query parameter,
//! so every URL that may be shown goes through [`redact_url`]. A DataWay URL carries its token
//! in `token=`, which is redacted the same way, and a sink's URL may carry a user and password
//! (`http://user:secret@alertmanager:9093`).

/// Replaces the value of every `b=` and `token=` query parameter, and a user and password
/// before the host, with `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            if pair == "b" || pair.starts_with("b=") {
                "b=REDACTED".to_string()
            } else if pair == "token" || pair.starts_with("token=") {
                "token=REDACTED".to_string()
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// `scheme://user:password@host...` as `scheme://REDACTED@host...`.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://REDACTED{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// Removes every occurrence of `secret` from `text` (for messages from libraries that may quote
/// a URL or a request). Only whole occurrences count, not bordered by a letter or digit, so that
/// a short token (`BOT_TOKEN=x`) does not turn "explanation" into "eREDACTEDplanation".
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(secret) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + secret.len()..].chars().next();
        let whole =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        out.push_str(if whole { "REDACTED" } else { secret });
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        assert_eq!(
            redact_url("http://h/api/accounts/?b=secret-token"),
            "http://h/api/accounts/?b=REDACTED"
        );
        assert_eq!(
            redact_url("http://h/api/x?p=1&b=secret&b=again"),
            "http://h/api/x?p=1&b=REDACTED&b=REDACTED"
        );
        assert_eq!(
            redact_url("https://dataway/v1/write/keyevent?token=tkn_secret"),
            "https://dataway/v1/write/keyevent?token=REDACTED"
        );
        assert_eq!(
            redact_url("http://h/api/status/info"),
            "http://h/api/status/info"
        );
        assert_eq!(
            redact_url("http://am:s3cret@alertmanager:9093/api/v2/alerts?x=a@b"),
            "http://REDACTED@alertmanager:9093/api/v2/alerts?x=a@b"
        );
        assert_eq!(
            scrub("failed http://h/?b=tok", "tok"),
            "failed http://h/?b=REDACTED"
        );
        assert_eq!(
            scrub("an explanation: GET /x?b=x&y=1 (x)", "x"),
            "an explanation: GET /REDACTED?b=REDACTED&y=1 (REDACTED)"
        );
        let uuid = "b0b5e5a3-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            scrub(&format!("url (http://h/api/?b={uuid})"), uuid),
            "url (http://h/api/?b=REDACTED)"
        );
    }
}
