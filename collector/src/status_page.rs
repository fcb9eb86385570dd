//! The status page on the metrics address: `GET /jobs` (HTML: a form for the filters, one table
//! section per entity; no script, no external asset) and `GET /jobs.json` (the same data).

use crate::status::{unix_now, StatusBoard};
use crate::status_view::{
    alerts_by_entity, build, EntityView, JobView, StatusQuery, StatusView, FAILING, STATES,
};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write;

/// The routes `/jobs` and `/jobs.json`, to merge into the telemetry server.
pub fn routes(board: StatusBoard) -> Router {
    Router::new()
        .route("/jobs", get(html_page))
        .route("/jobs.json", get(json_page))
        .with_state(board)
}

/// The view the query asks for, or the problem with the query.
fn view(board: &StatusBoard, query: &StatusQuery) -> Result<StatusView, String> {
    let filter = query.parse()?;
    let now = unix_now();
    // The store is read outside the board's lock, which a refresh may be waiting for.
    let firing = match board.read(|b| b.alerts.clone()) {
        Some(store) => crate::notify::alerts::firing(store.database(), now).unwrap_or_else(|e| {
            tracing::warn!("status page: cannot read the alert state: {e}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let alerts = alerts_by_entity(firing);
    Ok(board.read(|b| build(b, filter, &alerts, now)))
}

fn bad_request(problem: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response()
}

async fn json_page(State(board): State<StatusBoard>, Query(query): Query<StatusQuery>) -> Response {
    match view(&board, &query) {
        Ok(view) => Json(view).into_response(),
        Err(problem) => bad_request(problem),
    }
}

async fn html_page(State(board): State<StatusBoard>, Query(query): Query<StatusQuery>) -> Response {
    match view(&board, &query) {
        Ok(view) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render(&view),
        )
            .into_response(),
        Err(problem) => bad_request(problem),
    }
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `HH:MM:SS` UTC of a Unix time.
fn clock(unix: f64) -> String {
    let s = unix.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// "5 s ago", "in 2 min".
fn relative(unix: f64, now: f64) -> String {
    let delta = (unix - now).round();
    let secs = delta.abs() as u64;
    if secs == 0 {
        return "now".into();
    }
    let amount = match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if delta < 0.0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

fn when(unix: Option<f64>, now: f64) -> String {
    match unix {
        Some(t) => format!(
            "{} <span class=\"muted\">({})</span>",
            clock(t),
            relative(t, now)
        ),
        None => "<span class=\"muted\">never</span>".into(),
    }
}

fn cost(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 0.01 => format!("{:.1} ms", s * 1000.0),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) => format!("{s:.2} s"),
        None => String::new(),
    }
}

fn intervals(list: &[u64]) -> String {
    let each: Vec<String> = list.iter().map(|i| format!("{i} s")).collect();
    each.join(", ")
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}
.muted{color:#777}
form{margin:1em 0;display:flex;gap:1em;flex-wrap:wrap;align-items:end}
label{display:flex;flex-direction:column;font-size:.85em;color:#555}
input,select,button{font:inherit;padding:.2em .4em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.3em .5em;border-bottom:1px solid #e4e4e4}
thead th{background:#f4f4f4;font-size:.85em}
tr.entity-head th{background:#fafafa;border-top:2px solid #ccc;font-weight:normal}
tr.entity-head .name{font-weight:bold;font-size:1.05em}
dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:0 .6em}
dt{color:#777}dd{margin:0;font-family:monospace;overflow-wrap:anywhere}
.error{color:#a00;font-family:monospace;white-space:pre-wrap;word-break:break-word;max-width:40em}
.state{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em;font-weight:bold}
.s-failure,.s-timeout,.s-panic{background:#fdd;color:#900}
.s-skip{background:#ffe9c6;color:#850}
.s-left_out{background:#e6e6f5;color:#446}
.s-pending{background:#eee;color:#555}
.s-success{background:#dfd;color:#060}
.pages a{margin:0 .5em}
td.n{white-space:nowrap}
";

/// The whole HTML page.
pub fn render(view: &StatusView) -> String {
    let mut out = String::with_capacity(4096 + view.entities.len() * 1024);
    let title = format!("{} bot: jobs", escape(view.protocol));
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>"
    );
    let refreshed = match view.last_refresh {
        Some(t) => format!("jobs refreshed {}", when(Some(t), view.generated_at)),
        None => "no refresh yet".into(),
    };
    let _ = write!(
        out,
        "<p class=\"muted\">{} jobs · {refreshed} · page made at {} UTC · \
         <a href=\"/jobs.json{}\">JSON</a></p><p class=\"counts\">",
        view.jobs,
        clock(view.generated_at),
        escape(&query_string(view, view.page)),
    );
    for (state, count) in STATES
        .iter()
        .filter_map(|s| view.states.get(s).map(|c| (s, c)))
    {
        let _ = write!(
            out,
            "<span class=\"state s-{state}\">{} {count}</span> ",
            state.replace('_', " ")
        );
    }
    out.push_str("</p>");
    render_form(&mut out, view);
    render_pages(&mut out, view);
    out.push_str(
        "<table><thead><tr><th>Job</th><th>What</th><th>Intervals</th><th>Last firing</th>\
         <th>State</th><th>Run cost</th><th>Values accepted</th><th>Next due</th><th>Error</th></tr></thead>",
    );
    for entity in &view.entities {
        render_entity(&mut out, entity, view.generated_at);
    }
    out.push_str("</table>");
    if view.entities.is_empty() {
        out.push_str("<p class=\"muted\" id=\"nothing\">No job or entity matches.</p>");
    }
    render_pages(&mut out, view);
    out.push_str("</body></html>\n");
    out
}

fn render_form(out: &mut String, view: &StatusView) {
    let f = &view.filter;
    out.push_str("<form method=\"get\" action=\"/jobs\"><label>Account<select name=\"account\"><option value=\"\">any</option>");
    for account in &view.accounts {
        let selected = if f.account == Some(*account) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{account}\"{selected}>{account}</option>"
        );
    }
    let _ = write!(
        out,
        "</select></label><label>Entity<input name=\"entity\" value=\"{}\" \
         placeholder=\"name, id or address\"></label><label>State<select name=\"state\">\
         <option value=\"\">any</option>",
        escape(f.entity.as_deref().unwrap_or(""))
    );
    for state in std::iter::once(FAILING).chain(STATES) {
        let selected = if f.state.as_deref() == Some(state) {
            " selected"
        } else {
            ""
        };
        let label = match state {
            FAILING => "failing (failure, timeout, panic)".to_string(),
            other => other.replace('_', " "),
        };
        let _ = write!(out, "<option value=\"{state}\"{selected}>{label}</option>");
    }
    let _ = write!(
        out,
        "</select></label><input type=\"hidden\" name=\"per_page\" value=\"{}\">\
         <button type=\"submit\" id=\"apply\">Filter</button><a href=\"/jobs\">clear</a></form>",
        f.per_page
    );
}

/// The query string that shows `page` with the current filters.
fn query_string(view: &StatusView, page: usize) -> String {
    let f = &view.filter;
    let mut query = form_pairs(&[
        ("account", f.account.map(|a| a.to_string())),
        ("entity", f.entity.clone()),
        ("state", f.state.clone()),
        ("page", (page > 1).then(|| page.to_string())),
    ]);
    if !query.is_empty() {
        query.insert(0, '?');
    }
    query
}

fn form_pairs(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = Vec::new();
    for (name, value) in pairs {
        if let Some(value) = value {
            let encoded: String = value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            out.push(format!("{name}={encoded}"));
        }
    }
    out.join("&")
}

fn render_pages(out: &mut String, view: &StatusView) {
    let _ = write!(
        out,
        "<p class=\"pages\">{} entities match · page {} of {}",
        view.matching, view.page, view.pages
    );
    if view.page > 1 {
        let _ = write!(
            out,
            "<a href=\"/jobs{}\">previous</a>",
            escape(&query_string(view, view.page - 1))
        );
    }
    if view.page < view.pages {
        let _ = write!(
            out,
            "<a href=\"/jobs{}\">next</a>",
            escape(&query_string(view, view.page + 1))
        );
    }
    out.push_str("</p>");
}

fn render_entity(out: &mut String, entity: &EntityView, now: f64) {
    let id = entity.entity_id.map(|e| e.to_string()).unwrap_or_default();
    let name = match (&entity.name, entity.entity_id, entity.account_id) {
        (Some(name), _, _) => escape(name),
        (None, None, Some(_)) => "jobs of the account".into(),
        (None, None, None) => "jobs of the bot".into(),
        (None, Some(e), _) => format!("entity {e}"),
    };
    let mut details = Vec::new();
    if let Some(e) = entity.entity_id {
        details.push(format!("entity {e}"));
    }
    if let Some(address) = &entity.address {
        details.push(escape(address));
    }
    if let Some(a) = entity.account_id {
        details.push(format!("account {a}"));
    }
    let _ = write!(
        out,
        "<tbody class=\"entity\" data-entity=\"{id}\" data-state=\"{state}\">\
         <tr class=\"entity-head\"><th colspan=\"9\"><span class=\"state s-{state}\">{label}</span> \
         <span class=\"name\">{name}</span> <span class=\"muted\">{}</span></th></tr>",
        details.join(" · "),
        state = entity.state,
        label = entity.state.replace('_', " "),
    );
    if let Some(reason) = &entity.left_out {
        let _ = write!(
            out,
            "<tr class=\"left-out\"><td colspan=\"9\">Not polled: <span class=\"reason\">{}</span></td></tr>",
            escape(reason)
        );
    }
    for alert in &entity.alerts {
        let _ = write!(
            out,
            "<tr class=\"alert\"><td colspan=\"9\">Alert firing: <span class=\"alert-name\">{}</span> \
             since {}: {}</td></tr>",
            escape(&alert.name),
            when(Some(alert.since), now),
            escape(&alert.message)
        );
    }
    for note in &entity.notes {
        let _ = write!(
            out,
            "<tr class=\"note\"><td colspan=\"9\">Left out: {}</td></tr>",
            escape(note)
        );
    }
    for job in &entity.jobs {
        render_job(out, job, now);
    }
    out.push_str("</tbody>");
}

fn render_job(out: &mut String, job: &JobView, now: f64) {
    let mut summary = String::from("<dl>");
    for item in &job.summary.0 {
        let _ = write!(
            summary,
            "<dt>{}</dt><dd>{}</dd>",
            escape(&item.name),
            escape(&item.value)
        );
    }
    summary.push_str("</dl>");
    let error = match (&job.error, &job.last_error) {
        (Some(error), _) => escape(error),
        (None, Some(earlier)) => format!(
            "<span class=\"muted\">last error at {}: {}</span>",
            clock(earlier.at),
            escape(&earlier.message)
        ),
        (None, None) => String::new(),
    };
    let _ = write!(
        out,
        "<tr class=\"job\" data-job=\"{id}\" data-state=\"{state}\"><td>{id}</td><td>{summary}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td><td><span class=\"state s-{state}\">{state}</span> \
         <span class=\"muted\">{} of {} ok</span></td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>\
         <td class=\"error\">{error}</td></tr>",
        intervals(&job.intervals),
        when(job.last_firing.map(|t| t as f64), now),
        job.firings - job.unsuccessful,
        job.firings,
        cost(job.run_cost),
        values_cell(job),
        when(job.next_due.map(|t| t as f64), now),
        id = escape(&job.id),
        state = job.state,
    );
}

/// "4 of 4", or "2 of 4, 1 spooled, 1 dropped": what the backend accepted of the last firing's
/// values, not what the run returned.
fn values_cell(job: &JobView) -> String {
    let (Some(values), Some(delivered)) = (job.values, job.delivered) else {
        return String::new();
    };
    let mut cell = format!("{} of {values}", delivered.accepted);
    for (count, what) in [
        (delivered.spooled, "spooled"),
        (delivered.dropped, "dropped"),
    ] {
        if count > 0 {
            cell.push_str(&format!(", {count} {what}"));
        }
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Board, SkippedEntity};
    use crate::status_view::Filter;

    #[test]
    fn entity_text_is_escaped_and_filters_survive_paging_links() {
        let mut board = Board {
            protocol: "ping",
            ..Board::default()
        };
        for id in 0..3 {
            board.skipped.push(SkippedEntity {
                account_id: 7,
                entity_id: id,
                name: "<script>alert(1)</script>".into(),
                address: Some("\"x\" & 'y'".into()),
                reason: "no <b>credential</b>".into(),
            });
        }
        let filter = Filter {
            entity: Some("<script>".into()),
            per_page: 1,
            page: 2,
            ..Filter::default()
        };
        let alert = crate::status_view::AlertView {
            name: "PingHostDown".into(),
            since: 990.0,
            message: "no answer to <3> packets".into(),
        };
        let alerts = crate::status_view::FiringAlerts::from([((7, 1), vec![alert])]);
        let page = render(&build(&board, filter, &alerts, 1000.0));
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("Alert firing: <span class=\"alert-name\">PingHostDown</span>"),
            "{page}"
        );
        assert!(page.contains("no answer to &lt;3&gt; packets"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;x&quot; &amp; &#39;y&#39;"));
        assert!(
            page.contains("Not polled: <span class=\"reason\">no &lt;b&gt;credential&lt;/b&gt;")
        );
        assert!(page.contains("<a href=\"/jobs?entity=%3Cscript%3E\">previous</a>"));
        assert!(page.contains("<a href=\"/jobs?entity=%3Cscript%3E&amp;page=3\">next</a>"));
        assert!(page.contains("page 2 of 3"));
    }

    #[test]
    fn times_and_costs_read_naturally() {
        assert_eq!(clock(86_400.0 * 3.0 + 3_723.4), "01:02:03");
        assert_eq!(relative(990.0, 1000.0), "10 s ago");
        assert_eq!(relative(999.7, 1000.0), "now");
        assert_eq!(relative(1600.0, 1000.0), "in 10 min");
        assert_eq!(cost(Some(0.0123)), "12 ms");
        assert_eq!(cost(Some(0.00031)), "0.3 ms");
        assert_eq!(cost(Some(2.5)), "2.50 s");
    }
}
