//! Reading a bot's `/metrics` page the way a user's scraper would.

/// The text of `http://{address}/metrics` (`address` is `host:port`).
pub async fn page(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the /metrics body")
}

/// The value of the series `name` or `name{labels}`, written out exactly as on the page, if it
/// is there.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
