//! `--models all|default|LIST`: which models a command replays the stream through.

use super::{EXTRA_NAMES, NAMES, registered_names};

/// Names that only alias another model (left out of `all`).
pub const ALIASES: &[&str] = &["linux-7"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("unknown model {given:?}; known: all, default, {}", known_and_registered().join(", "))]
    Unknown { given: String },
}

/// Every model name a user can give: the default set, then the others (aliases included).
pub fn known() -> Vec<&'static str> {
    NAMES.iter().chain(EXTRA_NAMES).copied().collect()
}

/// [`known`] and the models registered from outside ([`super::register`]).
fn known_and_registered() -> Vec<&'static str> {
    let mut v = known();
    v.extend(registered_names());
    v
}

/// Every model once: the default set, then the others, aliases left out.
pub fn all_names() -> Vec<&'static str> {
    known_and_registered()
        .into_iter()
        .filter(|n| !ALIASES.contains(n))
        .collect()
}

/// Resolves a `--models` list: `default` is the default set ([`NAMES`]), `all` every model
/// ([`all_names`]); names are checked; the result keeps the order given, without repeats. An
/// empty list is the default set.
pub fn select(given: &[String]) -> Result<Vec<String>, SelectError> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |n: &str| {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    };
    if given.is_empty() {
        NAMES.iter().for_each(|n| push(n));
    }
    for g in given.iter().map(|g| g.trim()) {
        match g {
            "default" => NAMES.iter().for_each(|n| push(n)),
            "all" => all_names().into_iter().for_each(&mut push),
            n if known_and_registered().contains(&n) => push(n),
            n => {
                return Err(SelectError::Unknown {
                    given: n.to_string(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(list: &[&str]) -> Result<Vec<String>, SelectError> {
        select(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn default_all_and_lists() {
        let default: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(sel(&[]), Ok(default.clone()));
        assert_eq!(sel(&["default"]), Ok(default.clone()));
        let all = sel(&["all"]).unwrap_or_default();
        assert!(all.len() > NAMES.len(), "{all:?}");
        assert!(all.starts_with(&default));
        for extra in EXTRA_NAMES.iter().filter(|n| !ALIASES.contains(n)) {
            assert!(all.iter().any(|a| a == extra), "{extra} missing from all");
        }
        assert!(!all.iter().any(|a| a == "linux-7"), "aliases are left out");
        assert_eq!(
            sel(&["buddy", "default"]).map(|v| v.len()),
            Ok(NAMES.len()),
            "no repeats"
        );
        assert_eq!(sel(&["linux-7"]), Ok(vec!["linux-7".to_string()]));
        assert!(matches!(sel(&["nope"]), Err(SelectError::Unknown { .. })));
    }
}
