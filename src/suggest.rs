//! "Did you mean": the names closest to one a person mistyped (snapshot
//! names, kinds), for error messages. Pure functions over strings; it never
//! decides anything but the wording of a hint.

/// At most this many suggestions.
const MAX: usize = 3;

/// The candidates closest to `typed`, best first: a case-insensitive equal
/// name alone if there is one (`Product` for `product`), else names within
/// a small edit distance (about a third of the length), else names that
/// start with what was typed. Empty when nothing is close.
pub fn closest<'a, I>(typed: &str, candidates: I) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut names: Vec<&'a str> = candidates.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    names.retain(|n| *n != typed);
    let lower = typed.to_lowercase();
    if let Some(same) = names.iter().find(|n| n.to_lowercase() == lower) {
        return vec![same];
    }
    let limit = (typed.chars().count() / 3).max(1);
    let mut near: Vec<(usize, &'a str)> = names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(&lower, &n.to_lowercase()), *n))
        .filter(|(d, _)| *d <= limit)
        .collect();
    if near.is_empty() && !typed.is_empty() {
        near = names
            .iter()
            .filter(|n| n.to_lowercase().starts_with(&lower))
            .map(|n| (n.len(), *n))
            .collect();
    }
    near.sort();
    near.into_iter().take(MAX).map(|(_, n)| n).collect()
}

/// `did you mean `a`?` / `did you mean `a` or `b`?`, or None.
pub fn did_you_mean(names: &[&str]) -> Option<String> {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean {one}?")),
        [init @ .., last] => Some(format!("did you mean {} or {last}?", init.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_first_then_edits_then_prefixes() {
        let kinds = ["product", "customer", "order", "order_line"];
        assert_eq!(closest("Product", kinds), ["product"]);
        assert_eq!(closest("prodcut", kinds), ["product"]);
        assert_eq!(closest("ordr", kinds), ["order"]);
        assert_eq!(closest("order_", kinds), ["order"]);
        assert_eq!(closest("cust", kinds), ["customer"]);
        assert!(closest("zebra", kinds).is_empty());
        assert!(closest("order", kinds).iter().all(|k| *k != "order"));
    }

    #[test]
    fn wording() {
        assert_eq!(did_you_mean(&[]), None);
        assert_eq!(did_you_mean(&["a"]).unwrap(), "did you mean `a`?");
        assert_eq!(
            did_you_mean(&["a", "b", "c"]).unwrap(),
            "did you mean `a`, `b` or `c`?"
        );
    }
}
