//! Authentication and permission checks, in the backend's order: token (query `b=` only), then the
//! permission of the resource, and only then routing (contract §2).

use crate::fixture::{Account, Bot, Fixture, Id};

/// Why a request is refused before it reaches any route.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// 401 `Access denied`: no token, a malformed or unknown one, or any `Authorization` header.
    Unauthorized,
    /// 500 `Could not validate access`: a token that passes the format check but breaks the lookup
    /// (a trailing newline, typically read from a file).
    CouldNotValidate,
}

/// Finds the bot a request authenticates as. `authorization_present` wins over everything (the
/// backend parses the header as a person's JWT and ignores `b`).
pub(crate) fn authenticate(
    fixture: &Fixture,
    authorization_present: bool,
    token: Option<&str>,
) -> Result<Id, AuthFailure> {
    if authorization_present {
        return Err(AuthFailure::Unauthorized);
    }
    let token = token.ok_or(AuthFailure::Unauthorized)?;
    if !passes_uuid_format_check(token) {
        return Err(AuthFailure::Unauthorized);
    }
    if token.ends_with('\n') {
        return Err(AuthFailure::CouldNotValidate);
    }
    fixture
        .bots
        .values()
        .find(|bot| bot.token.eq_ignore_ascii_case(token))
        .map(|bot| bot.id)
        .ok_or(AuthFailure::Unauthorized)
}

/// The backend's UUID check: a Python regex ending in `$`, which also matches before one final newline.
fn passes_uuid_format_check(token: &str) -> bool {
    let token = token.strip_suffix('\n').unwrap_or(token);
    let groups: Vec<&str> = token.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The resource a permission is checked against: the path without `/api/` and without a trailing `/`.
pub(crate) fn resource_of(decoded_path: &str) -> &str {
    let resource = decoded_path
        .strip_prefix("/api/")
        .or_else(|| decoded_path.strip_prefix('/'))
        .unwrap_or(decoded_path);
    resource.strip_suffix('/').unwrap_or(resource)
}

/// Whether `bot` may use `method` on `resource` (HEAD counts as GET; a few GETs are open to every user).
pub(crate) fn is_allowed(bot: &Bot, resource: &str, method: &str) -> bool {
    let method = if method == "HEAD" { "GET" } else { method };
    if method == "GET"
        && matches!(
            resource,
            "profile" | "profile/permissions" | "accounts" | "bots"
        )
    {
        return true;
    }
    bot.permissions.iter().any(|permission| {
        let method_ok = match &permission.methods {
            None => true,
            Some(methods) => methods.iter().any(|m| m == method),
        };
        let prefix_ok = match &permission.resource_prefix {
            None => true,
            Some(prefix) => covers(prefix, resource),
        };
        method_ok && prefix_ok
    })
}

/// Path-segment prefix: `accounts/5` covers `accounts/5` and `accounts/5/entities`, not `accounts/55`.
fn covers(prefix: &str, resource: &str) -> bool {
    match resource.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The accounts `GET /api/accounts` lists for a bot, sorted by name: all of them for a permission with
/// prefix null or exactly `accounts`, else those named by an `accounts/<id>[/...]` prefix, whatever its
/// methods.
pub(crate) fn visible_accounts<'a>(fixture: &'a Fixture, bot: &Bot) -> Vec<&'a Account> {
    let sees_all = bot
        .permissions
        .iter()
        .any(|p| matches!(p.resource_prefix.as_deref(), None | Some("accounts")));
    let mut accounts: Vec<&Account> = if sees_all {
        fixture.accounts.values().collect()
    } else {
        let ids: Vec<Id> = bot
            .permissions
            .iter()
            .filter_map(|p| p.resource_prefix.as_deref())
            .filter_map(account_of_prefix)
            .collect();
        fixture
            .accounts
            .values()
            .filter(|a| ids.contains(&a.id))
            .collect()
    };
    accounts.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    accounts
}

fn account_of_prefix(prefix: &str) -> Option<Id> {
    let rest = prefix.strip_prefix("accounts/")?;
    let digits = rest.split('/').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Permission;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(covers("accounts/5", "accounts/5"));
        assert!(covers("accounts/5", "accounts/5/entities/7"));
        assert!(!covers("accounts/5", "accounts/55"));
        assert!(!covers("accounts/5", "accounts"));
    }

    #[test]
    fn uuid_check_tolerates_one_newline_like_python() {
        assert!(passes_uuid_format_check(
            "0a1b2c3d-0000-4000-8000-0123456789AB"
        ));
        assert!(passes_uuid_format_check(
            "0a1b2c3d-0000-4000-8000-0123456789ab\n"
        ));
        assert!(!passes_uuid_format_check(
            "0a1b2c3d-0000-4000-8000-0123456789ab\n\n"
        ));
        assert!(!passes_uuid_format_check(
            "0a1b2c3d-0000-4000-8000-0123456789a"
        ));
        assert!(!passes_uuid_format_check(
            " 0a1b2c3d-0000-4000-8000-0123456789ab"
        ));
    }

    #[test]
    fn account_bot_lists_its_account_even_without_get_on_it() {
        let mut fixture = Fixture::new();
        fixture.account(5, "five").account(6, "six");
        let bot = Bot::new(1, "b", None)
            .with_permissions(vec![Permission::methods("accounts/6/values", &["POST"])]);
        let ids: Vec<Id> = visible_accounts(&fixture, &bot)
            .iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, vec![6]);
        assert!(!is_allowed(&bot, "accounts/6/entities", "GET"));
        assert!(is_allowed(&bot, "accounts", "HEAD"));
    }
}
