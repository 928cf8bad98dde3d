//! Globs over pipeline names, as `[[route]] pipelines` and `[[discover]]` write them.

use super::{ConfigError, invalid};

/// A glob over pipeline names: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Matches every name (`[[discover]]` without `include`).
    pub(super) fn any() -> Self {
        Self("*".to_owned())
    }

    pub(super) fn parse(key: &str, pattern: &str) -> Result<Self, ConfigError> {
        let ok = !pattern.is_empty()
            && pattern.len() <= 200
            && pattern.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-' | '*' | '?')
            });
        if !ok {
            return Err(invalid(
                key,
                format!(
                    "{pattern:?} is not a pipeline glob; expected pipeline-name characters (A-Z a-z 0-9 . @ _ -) with * and ?"
                ),
            ));
        }
        Ok(Self(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative wildcard matching with backtracking to the last `*` (linear in practice).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}
