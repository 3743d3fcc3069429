//! Validated types of the users service: parse at the edge, then trust the type.

use std::collections::BTreeSet;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngExt as _;
use sha2::{Digest, Sha256};

pub use rookery_kit::ids::AccountId;

rookery_kit::define_id!(
    /// An OAuth application.
    AppId
);
rookery_kit::define_id!(
    /// An access token (its row, not its secret value).
    TokenId
);

/// A field-level validation failure, reported the way Mastodon does (`details`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Parameter name.
    pub field: &'static str,
    /// Mastodon code: `ERR_BLANK`, `ERR_INVALID`, `ERR_TOO_LONG`, `ERR_TAKEN`, ...
    pub code: &'static str,
    /// Human-readable description.
    pub description: String,
}

impl FieldError {
    fn new(field: &'static str, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            code,
            description: description.into(),
        }
    }
}

/// Usernames Mastodon reserves for the instance itself.
const RESERVED_USERNAMES: &[&str] = &[
    "admin",
    "administrator",
    "root",
    "support",
    "help",
    "mastodon",
    "rookery",
    "postmaster",
    "webmaster",
    "abuse",
    "security",
    "www",
    "settings",
    "about",
    "api",
];

/// A local username: 1–30 of `[A-Za-z0-9_]`, not reserved. Unique case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validates a requested username.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(FieldError::new("username", "ERR_BLANK", "can't be blank"));
        }
        if name.chars().count() > 30 {
            return Err(FieldError::new(
                "username",
                "ERR_TOO_LONG",
                "is too long (maximum is 30 characters)",
            ));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(FieldError::new(
                "username",
                "ERR_INVALID",
                "must contain only letters, numbers and underscores",
            ));
        }
        if RESERVED_USERNAMES.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(FieldError::new("username", "ERR_RESERVED", "is reserved"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The username as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address (shape only: delivery is not verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates an email address.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim();
        if email.is_empty() {
            return Err(FieldError::new("email", "ERR_BLANK", "can't be blank"));
        }
        let valid = email.len() <= 254
            && !email.chars().any(char::is_whitespace)
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            });
        if !valid {
            return Err(FieldError::new("email", "ERR_INVALID", "is invalid"));
        }
        Ok(Self(email.to_owned()))
    }

    /// The address as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8–72 bytes (Mastodon's bounds).
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Validates a new password.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new("password", "ERR_BLANK", "can't be blank"));
        }
        if raw.len() < 8 {
            return Err(FieldError::new(
                "password",
                "ERR_TOO_SHORT",
                "is too short (minimum is 8 characters)",
            ));
        }
        if raw.len() > 72 {
            return Err(FieldError::new(
                "password",
                "ERR_TOO_LONG",
                "is too long (maximum is 72 characters)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The clear text, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: at most 30 characters, no control characters.
pub fn parse_display_name(raw: &str) -> Result<String, FieldError> {
    let name: String = raw.trim().chars().filter(|c| !c.is_control()).collect();
    if name.chars().count() > 30 {
        return Err(FieldError::new(
            "display_name",
            "ERR_TOO_LONG",
            "is too long (maximum is 30 characters)",
        ));
    }
    Ok(name)
}

/// A profile bio as typed: at most 500 characters.
pub fn parse_note(raw: &str) -> Result<String, FieldError> {
    let note = raw.trim();
    if note.chars().count() > 500 {
        return Err(FieldError::new(
            "note",
            "ERR_TOO_LONG",
            "is too long (maximum is 500 characters)",
        ));
    }
    Ok(note.to_owned())
}

/// The default visibility of new posts.
pub fn parse_privacy(raw: &str) -> Result<String, FieldError> {
    match raw {
        "public" | "unlisted" | "private" | "direct" => Ok(raw.to_owned()),
        _ => Err(FieldError::new(
            "source[privacy]",
            "ERR_INCLUSION",
            "is not included in the list",
        )),
    }
}

/// A posting language: an ISO 639-1 code (two lowercase letters) or empty.
pub fn parse_language(raw: &str) -> Result<String, FieldError> {
    let lang = raw.trim().to_ascii_lowercase();
    if lang.is_empty() || (lang.len() == 2 && lang.chars().all(|c| c.is_ascii_lowercase())) {
        Ok(lang)
    } else {
        Err(FieldError::new(
            "source[language]",
            "ERR_INVALID",
            "is not a valid ISO 639-1 code",
        ))
    }
}

/// Renders a plain-text bio as HTML: escaped, paragraphs on blank lines, `<br />` on
/// single newlines (Mastodon's plain-text formatting).
pub fn note_html(note: &str) -> String {
    if note.is_empty() {
        return String::new();
    }
    note.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("<p>{}</p>", escape_html(p.trim()).replace('\n', "<br />")))
        .collect()
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Every OAuth scope Mastodon defines.
const KNOWN_SCOPES: &[&str] = &[
    "read",
    "write",
    "follow",
    "push",
    "profile",
    "read:accounts",
    "read:blocks",
    "read:bookmarks",
    "read:favourites",
    "read:filters",
    "read:follows",
    "read:lists",
    "read:mutes",
    "read:notifications",
    "read:search",
    "read:statuses",
    "write:accounts",
    "write:blocks",
    "write:bookmarks",
    "write:conversations",
    "write:favourites",
    "write:filters",
    "write:follows",
    "write:lists",
    "write:media",
    "write:mutes",
    "write:notifications",
    "write:reports",
    "write:statuses",
];

/// A set of known OAuth scopes. Requests name scopes space-separated (`+` in queries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a scope string; empty means `default`. Unknown scopes are an error naming them.
    pub fn parse(raw: &str, default: &str) -> Result<Self, String> {
        let raw = if raw.trim().is_empty() { default } else { raw };
        let mut set = BTreeSet::new();
        for scope in raw.split([' ', '+']).filter(|s| !s.is_empty()) {
            if !KNOWN_SCOPES.contains(&scope) {
                return Err(format!("unknown scope {scope:?}"));
            }
            set.insert(scope.to_owned());
        }
        if set.is_empty() {
            return Err("no scope requested".to_owned());
        }
        Ok(Self(set))
    }

    /// True when every scope of `self` was granted to the app (exact names, as
    /// Doorkeeper checks them).
    pub fn is_subset_of(&self, allowed: &Scopes) -> bool {
        self.0.is_subset(&allowed.0)
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        // Broad scopes first reads naturally ("read write follow push").
        let order = |s: &String| (s.contains(':'), KNOWN_SCOPES.iter().position(|k| k == s));
        let mut scopes: Vec<&String> = self.0.iter().collect();
        scopes.sort_by_key(|s| order(s));
        for s in scopes {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

/// A random secret (token, client id/secret, code): 256 bits, URL-safe base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret: what is stored and looked up.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Hex of [`secret_hash`]: the key under which a token's cache entries are invalidated.
pub fn token_key(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// PKCE S256: `BASE64URL(SHA256(verifier)) == challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse(" Alice_1 ").unwrap().as_str(), "Alice_1");
        assert_eq!(Username::parse("").unwrap_err().code, "ERR_BLANK");
        assert_eq!(Username::parse("a-b").unwrap_err().code, "ERR_INVALID");
        assert_eq!(Username::parse("émile").unwrap_err().code, "ERR_INVALID");
        assert_eq!(
            Username::parse(&"a".repeat(31)).unwrap_err().code,
            "ERR_TOO_LONG"
        );
        assert_eq!(Username::parse("Admin").unwrap_err().code, "ERR_RESERVED");
    }

    #[test]
    fn emails_and_passwords() {
        assert!(Email::parse("a@b.example").is_ok());
        for bad in ["", "ab.example", "a@b", "a@.b", "a b@c.d", "@b.c"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Password::parse("short").unwrap_err().code, "ERR_TOO_SHORT");
        assert!(Password::parse("long enough").is_ok());
        assert_eq!(
            Password::parse(&"x".repeat(73)).unwrap_err().code,
            "ERR_TOO_LONG"
        );
    }

    #[test]
    fn notes_render_escaped_paragraphs() {
        assert_eq!(
            note_html("hi <b>\nthere\n\nbye"),
            "<p>hi &lt;b&gt;<br />there</p><p>bye</p>"
        );
        assert_eq!(note_html(""), "");
    }

    #[test]
    fn scopes_parse_default_and_subset() {
        let app = Scopes::parse("read write follow push", "read").unwrap();
        assert_eq!(app.to_string(), "read write follow push");
        assert_eq!(Scopes::parse("", "read").unwrap().to_string(), "read");
        assert_eq!(
            Scopes::parse("read+write", "read").unwrap().to_string(),
            "read write"
        );
        assert!(Scopes::parse("read admin:all", "read").is_err());
        assert!(Scopes::parse("read", "").unwrap().is_subset_of(&app));
        assert!(
            !Scopes::parse("read:accounts", "")
                .unwrap()
                .is_subset_of(&app)
        );
    }

    #[test]
    fn secrets_are_unique_and_pkce_checks() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 43);
        assert_eq!(token_key(&secret_hash("abc")).len(), 64);
        // Pair computed independently: base64url(sha256(verifier)) with Python hashlib.
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFwnW-cM",
            "fYKGoS0IHq7dSHU7i6ZesqB_cepvnw2ymGmVyylQY8s"
        ));
        assert!(!pkce_matches(
            "other",
            "fYKGoS0IHq7dSHU7i6ZesqB_cepvnw2ymGmVyylQY8s"
        ));
    }
}
