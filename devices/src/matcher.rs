//! Pure device-name matching, independent of any audio host.
//!
//! Rules (all comparisons are case-insensitive and ignore surrounding whitespace):
//!
//! 1. If one or more candidates have a key that is *exactly* equal to the query, only those
//!    candidates are considered: one means a match, several means the name is ambiguous.
//! 2. Otherwise every candidate having a key that *contains* the query is considered: one means a
//!    match, several means ambiguous, none means not found.
//!
//! A candidate may have several keys (for ALSA: the human readable description and the PCM id
//! such as `hw:CARD=0,DEV=0`), so users can type either.

/// Why a query did not resolve to exactly one candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchError {
    /// No candidate matches the query.
    NotFound,
    /// Several candidates match; the indices of all matching candidates, in input order.
    Ambiguous(Vec<usize>),
}

/// Match `query` against a plain list of names. Returns the index of the single match.
///
/// ```
/// use patchcord_devices::matcher::{match_name, MatchError};
/// let names = ["USB Mic", "USB Mic Pro", "HDMI"];
/// assert_eq!(match_name("usb mic", &names), Ok(0)); // exact beats substring
/// assert_eq!(match_name("hdm", &names), Ok(2));
/// assert_eq!(match_name("usb", &names), Err(MatchError::Ambiguous(vec![0, 1])));
/// assert_eq!(match_name("jack", &names), Err(MatchError::NotFound));
/// ```
pub fn match_name<S: AsRef<str>>(query: &str, names: &[S]) -> Result<usize, MatchError> {
    let keyed: Vec<[&str; 1]> = names.iter().map(|n| [n.as_ref()]).collect();
    match_keys(query, &keyed)
}

/// Match `query` against candidates that each have one or more keys (any key may match).
/// Returns the index of the single matching candidate.
pub fn match_keys<C, K>(query: &str, candidates: &[C]) -> Result<usize, MatchError>
where
    C: AsRef<[K]>,
    K: AsRef<str>,
{
    let q = normalize(query);
    let lowered: Vec<Vec<String>> = candidates
        .iter()
        .map(|c| c.as_ref().iter().map(|k| normalize(k.as_ref())).collect())
        .collect();

    let exact: Vec<usize> = lowered
        .iter()
        .enumerate()
        .filter(|(_, keys)| keys.contains(&q))
        .map(|(i, _)| i)
        .collect();
    let pool = if exact.is_empty() {
        lowered
            .iter()
            .enumerate()
            .filter(|(_, keys)| keys.iter().any(|k| k.contains(&q)))
            .map(|(i, _)| i)
            .collect()
    } else {
        exact
    };
    match pool.as_slice() {
        [] => Err(MatchError::NotFound),
        [one] => Ok(*one),
        _ => Err(MatchError::Ambiguous(pool)),
    }
}

fn normalize(s: &str) -> String {
    s.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_beats_substring() {
        let names = ["Speaker", "Speaker 2", "Headphone Speaker"];
        assert_eq!(match_name("speaker", &names), Ok(0));
        assert_eq!(match_name("  SPEAKER 2 ", &names), Ok(1));
    }

    #[test]
    fn unique_substring_matches() {
        let names = ["HDA Intel PCH", "USB Audio CODEC", "Loopback"];
        assert_eq!(match_name("usb", &names), Ok(1));
        assert_eq!(match_name("loop", &names), Ok(2));
    }

    #[test]
    fn ambiguous_substring_lists_all_matches() {
        let names = ["hw:0", "plughw:0", "null"];
        assert_eq!(match_name("hw", &names), Err(MatchError::Ambiguous(vec![0, 1])));
    }

    #[test]
    fn ambiguous_exact_duplicates() {
        let names = ["Mic", "mic", "Other"];
        assert_eq!(match_name("MIC", &names), Err(MatchError::Ambiguous(vec![0, 1])));
    }

    #[test]
    fn absent_name_is_not_found() {
        let names = ["a", "b"];
        assert_eq!(match_name("USB Mic", &names), Err(MatchError::NotFound));
        let empty: [&str; 0] = [];
        assert_eq!(match_name("x", &empty), Err(MatchError::NotFound));
    }

    #[test]
    fn any_key_may_match_and_exact_key_wins() {
        let cands = [
            vec!["HDA Intel PCH, ALC892 Analog", "hw:CARD=0,DEV=0"],
            vec!["HDA Intel PCH, ALC892 Analog", "plughw:CARD=0,DEV=0"],
        ];
        // Same description: substring on description is ambiguous.
        assert_eq!(
            match_keys("alc892", &cands),
            Err(MatchError::Ambiguous(vec![0, 1]))
        );
        // Exact PCM id wins even though "hw:CARD=0,DEV=0" is a substring of the other id.
        assert_eq!(match_keys("hw:card=0,dev=0", &cands), Ok(0));
        assert_eq!(match_keys("plughw", &cands), Ok(1));
    }
}
