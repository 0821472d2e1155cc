//! Topic selection by glob patterns (`*` any run of characters, `?` one character).

/// Whether `name` matches the glob `pattern`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Topic selection: included by any of `include` (all topics but internal ones when empty),
/// excluded by any of `exclude`.
#[derive(Debug, Clone, Default)]
pub struct TopicFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl TopicFilter {
    /// A filter from include and exclude globs.
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Self {
        TopicFilter { include, exclude }
    }

    /// Whether `topic` is selected. Internal topics (`__consumer_offsets`, `__transaction_state`,
    /// anything starting with `__`) are selected only by an include pattern that names them
    /// explicitly (starts with `__`).
    pub fn selects(&self, topic: &str, is_internal: bool) -> bool {
        let internal = is_internal || topic.starts_with("__");
        let included = if self.include.is_empty() {
            !internal
        } else {
            self.include
                .iter()
                .any(|p| glob_match(p, topic) && (!internal || p.starts_with("__")))
        };
        included && !self.exclude.iter().any(|p| glob_match(p, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "orders"));
        assert!(glob_match("ord*", "orders"));
        assert!(glob_match("*ers", "orders"));
        assert!(glob_match("o?ders", "orders"));
        assert!(glob_match("*d*r*", "orders"));
        assert!(!glob_match("ord", "orders"));
        assert!(!glob_match("x*", "orders"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn filter() {
        let all = TopicFilter::default();
        assert!(all.selects("orders", false));
        assert!(!all.selects("__consumer_offsets", true));
        let f = TopicFilter::new(vec!["ord*".into(), "__tx*".into()], vec!["*-tmp".into()]);
        assert!(f.selects("orders", false));
        assert!(!f.selects("orders-tmp", false));
        assert!(!f.selects("payments", false));
        assert!(f.selects("__txlog", true));
        let star = TopicFilter::new(vec!["*".into()], vec![]);
        assert!(!star.selects("__consumer_offsets", true));
    }
}
