//! Model names as Ollama parses them (`types/model/name.go`): `[host/][namespace/]model[:tag]`,
//! defaults `registry.ollama.ai`, `library`, `latest`; matched case-insensitively.

pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

/// A syntactically valid model name. Every part passed Ollama's character rules, so none can
/// be `..`, empty, or contain a path separator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

/// Ollama's per-part rules: first char `[A-Za-z0-9_]`, then `[A-Za-z0-9_-]`, plus `.` except in
/// the namespace and `:` in the host only; host 1-350 chars, the others 1-80.
fn valid_part(s: &str, part: Part) -> bool {
    let max = if part == Part::Host { 350 } else { 80 };
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return false };
    if s.len() > max || !(first.is_ascii_alphanumeric() || first == '_') {
        return false;
    }
    chars.all(|c| {
        c.is_ascii_alphanumeric()
            || c == '_'
            || c == '-'
            || (c == '.' && part != Part::Namespace)
            || (c == ':' && part == Part::Host)
    })
}

impl ModelName {
    /// Parses a name; `Err` says which part is invalid.
    pub fn parse(s: &str) -> Result<ModelName, String> {
        let s = s.trim();
        let last_slash = s.rfind('/');
        let (rest, tag) = match s.rfind(':') {
            Some(c) if !matches!(last_slash, Some(sl) if sl > c) => (&s[..c], &s[c + 1..]),
            _ => (s, DEFAULT_TAG),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (host, namespace, model) = match parts[..] {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, m),
            [n, m] => (DEFAULT_HOST, n, m),
            [h, n, m] => (h, n, m),
            _ => return Err("too many '/' separated parts".into()),
        };
        for (value, part, what) in [
            (host, Part::Host, "host"),
            (namespace, Part::Namespace, "namespace"),
            (model, Part::Model, "model"),
            (tag, Part::Tag, "tag"),
        ] {
            if !valid_part(value, part) {
                return Err(format!("invalid {what} {value:?}"));
            }
        }
        Ok(ModelName { host: host.into(), namespace: namespace.into(), model: model.into(), tag: tag.into() })
    }

    /// Ollama's `DisplayShortest`: `llama3.2:latest`, `user/model:tag`, `hf.co/org/repo:Q4_K_M`.
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!("{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// True for names that can refer to a file in the models directory (no host or namespace
    /// other than the defaults).
    pub fn is_default_namespace(&self) -> bool {
        self.host.eq_ignore_ascii_case(DEFAULT_HOST) && self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE)
    }

    /// Whether the on-disk spelling parts match this name, ignoring ASCII case.
    pub fn matches(&self, other: &ModelName) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_display() {
        let n = ModelName::parse("gemma3").unwrap();
        assert_eq!((n.host.as_str(), n.namespace.as_str(), n.tag.as_str()), (DEFAULT_HOST, DEFAULT_NAMESPACE, "latest"));
        assert_eq!(n.display_shortest(), "gemma3:latest");
        assert_eq!(ModelName::parse("registry.ollama.ai/library/llama3.2:1b").unwrap().display_shortest(), "llama3.2:1b");
        assert_eq!(ModelName::parse("user/model:tag").unwrap().display_shortest(), "user/model:tag");
        assert_eq!(ModelName::parse("hf.co/org/Repo-GGUF:Q4_K_M").unwrap().display_shortest(), "hf.co/org/Repo-GGUF:Q4_K_M");
        assert_eq!(ModelName::parse("localhost:5000/ns/m").unwrap().host, "localhost:5000");
        assert!(ModelName::parse("SmolLM2-135M-Instruct.Q4_1").is_ok());
    }

    #[test]
    fn traversal_and_junk_rejected() {
        for bad in ["", "..", "../x", "a/../b", "a/b/c/d", "/etc/passwd", "x:../../y", ".hidden", "a b", "ns.x/m", "m:", "a\\b", "a\0b", "%2e%2e"] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ModelName::parse(&"m".repeat(81)).is_err());
    }
}
