//! Keeping the bot token out of logs and error messages: it travels in the `b` query parameter,
//! so every URL that may be shown goes through [`redact_url`].

/// Replaces the value of every `b=` query parameter with `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            if pair == "b" || pair.starts_with("b=") {
                "b=REDACTED".to_string()
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
            redact_url("http://h/api/status/info"),
            "http://h/api/status/info"
        );
        assert_eq!(
            scrub("failed http://h/?b=tok", "tok"),
            "failed http://h/?b=REDACTED"
        );
    }
}
