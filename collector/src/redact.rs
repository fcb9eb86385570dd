//! Keeping the bot token out of logs and error messages: it travels in the `b` query parameter,
//! so every URL that may be shown goes through [`redact_url`]. A DataWay URL carries its token
//! in `token=`, which is redacted the same way.

/// Replaces the value of every `b=` and `token=` query parameter with `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
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

/// Removes every occurrence of `secret` from `text` (for messages from libraries that may quote
/// a URL or a request).
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "REDACTED")
    }
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
            scrub("failed http://h/?b=tok", "tok"),
            "failed http://h/?b=REDACTED"
        );
    }
}
