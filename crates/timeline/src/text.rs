//! Status text: finding mentions, hashtags and links, counting length, and
//! rendering to the (sanitised) HTML Mastodon clients expect.
//!
//! Everything works off one tokenizer ([`tokenize`]), so `parse`, `length` and
//! `render` always agree on what is a mention, a hashtag or a link.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};

/// Most characters a status may have (Mastodon's default).
pub const MAX_CHARS: usize = 500;

/// How many characters any URL counts for, whatever its real length (Mastodon's rule).
const URL_LENGTH: usize = 23;
/// Longest username a mention may have.
const MAX_USERNAME_LEN: usize = 30;
/// Longest hashtag (in characters); longer ones are not tags at all.
const MAX_TAG_LEN: usize = 100;
/// How many characters of a URL (after `scheme://` and `www.`) are shown.
const URL_DISPLAY_LEN: usize = 30;

/// What a status text refers to, found before rendering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Mentioned usernames, lowercased, deduplicated, in order of first appearance.
    /// `@alice` and `@alice@<local domain>` both give "alice"; mentions of other domains
    /// (`@bob@elsewhere.social`) are NOT included (federation is out of scope).
    pub mentions: Vec<String>,
    /// Hashtags, lowercased (Unicode-aware), deduplicated, in order of first appearance, without '#'.
    pub tags: Vec<String>,
    /// URLs (http/https only), in order.
    pub links: Vec<String>,
}

/// A mentioned account that exists, for rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MentionTarget<'a> {
    /// The account's canonical username (shown as `@username`).
    pub username: &'a str,
    /// The account's profile URL (the link's `href`).
    pub url: &'a str,
}

/// Finds mentions, hashtags and links. `local_domain` is e.g. "rookery.test" (the instance
/// domain, to accept `@user@local_domain`).
pub fn parse(text: &str, local_domain: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut seen_mentions = HashSet::new();
    let mut seen_tags = HashSet::new();
    for token in tokenize(text) {
        match token {
            Token::Text(_) => {}
            Token::Link(url) => parsed.links.push(url.to_owned()),
            Token::Mention {
                username, domain, ..
            } => {
                if is_local(domain, local_domain) {
                    let username = username.to_ascii_lowercase();
                    if seen_mentions.insert(username.clone()) {
                        parsed.mentions.push(username);
                    }
                }
            }
            Token::Tag { name, .. } => {
                let tag = name.to_lowercase();
                if seen_tags.insert(tag.clone()) {
                    parsed.tags.push(tag);
                }
            }
        }
    }
    parsed
}

/// Length as Mastodon counts it: characters (Unicode scalar values), except every URL counts
/// as 23 and a mention `@user@domain` counts only `@user`.
pub fn length(text: &str) -> usize {
    tokenize(text)
        .into_iter()
        .map(|token| match token {
            Token::Text(s) | Token::Tag { raw: s, .. } => s.chars().count(),
            Token::Link(_) => URL_LENGTH,
            Token::Mention { username, .. } => 1 + username.chars().count(),
        })
        .sum()
}

/// Renders a status text as Mastodon does, as sanitised HTML.
///
/// `mentions` maps lowercased username -> target; mentions not in the map (and mentions of
/// other domains) stay plain (escaped) text. `base_url` e.g. "https://rookery.test" (no
/// trailing slash) for hashtag links.
pub fn render(
    text: &str,
    local_domain: &str,
    base_url: &str,
    mentions: &HashMap<String, MentionTarget<'_>>,
) -> String {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut html = String::with_capacity(normalised.len() * 2);
    for paragraph in normalised.split("\n\n") {
        // "a\n\n\nb" splits into "a" and "\nb"; runs of blank lines give empty pieces.
        let paragraph = paragraph.trim_matches('\n');
        if paragraph.trim().is_empty() {
            continue;
        }
        html.push_str("<p>");
        for token in tokenize(paragraph) {
            render_token(&mut html, token, local_domain, base_url, mentions);
        }
        html.push_str("</p>");
    }
    if html.is_empty() {
        return html;
    }
    restore_mastodon_serialisation(&SANITIZER.clean(&html).to_string())
}

/// The allow-list sanitiser, keeping exactly what [`render`] emits.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(HashSet::from(["p", "br", "a", "span"]))
        .tag_attributes(HashMap::from([
            // `rel` is ours to set (hashtags get rel="tag", links rel="nofollow noopener",
            // mentions none), so ammonia's own rel-insertion must be off: with `link_rel`
            // set, ammonia appends its rel to every <a> and panics if `rel` is allowed.
            ("a", HashSet::from(["href", "rel", "target", "translate"])),
            ("span", HashSet::from(["translate"])),
        ]))
        .allowed_classes(HashMap::from([
            ("a", HashSet::from(["u-url", "mention", "hashtag"])),
            ("span", HashSet::from(["h-card", "invisible", "ellipsis"])),
        ]))
        .generic_attributes(HashSet::new())
        .url_schemes(HashSet::from(["http", "https"]))
        .link_rel(None)
        .strip_comments(true);
    builder
});

/// A piece of status text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'t> {
    /// Plain text.
    Text(&'t str),
    /// An http(s) URL.
    Link(&'t str),
    /// `@username` or `@username@domain`.
    Mention {
        raw: &'t str,
        username: &'t str,
        domain: Option<&'t str>,
    },
    /// `#name`.
    Tag { raw: &'t str, name: &'t str },
}

/// Splits text into plain text, links, mentions and hashtags.
///
/// Links are found first (with linkify); mentions and hashtags are only looked for outside
/// them, and a mention or hashtag that would run into a link is not one.
fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]).url_must_have_scheme(true);
    let mut links = finder
        .links(text)
        .filter(|link| is_http_url(link.as_str()))
        .map(|link| (link.start(), link.end()))
        .peekable();

    let mut tokens = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        let next_link = links.peek().copied();
        if let Some((start, end)) = next_link
            && start == i
        {
            push_text(&mut tokens, &text[text_start..i]);
            tokens.push(Token::Link(&text[start..end]));
            links.next();
            i = end;
            text_start = end;
            continue;
        }
        let limit = next_link.map_or(text.len(), |(start, _)| start);
        let found = match c {
            '@' => scan_mention(text, i).filter(|(end, _)| *end <= limit),
            '#' => scan_tag(text, i).filter(|(end, _)| *end <= limit),
            _ => None,
        };
        if let Some((end, token)) = found {
            push_text(&mut tokens, &text[text_start..i]);
            tokens.push(token);
            i = end;
            text_start = end;
        } else {
            i += c.len_utf8();
        }
    }
    push_text(&mut tokens, &text[text_start..]);
    tokens
}

fn push_text<'t>(tokens: &mut Vec<Token<'t>>, text: &'t str) {
    if !text.is_empty() {
        tokens.push(Token::Text(text));
    }
}

fn is_http_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        url.len() > scheme.len()
            && url
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    })
}

/// A mention starting at `at` (an `@`): `@user` or `@user@domain`, not preceded by a word
/// character, `/` or `=` (so `a@b.c` and `https://x/@user` are not mentions).
fn scan_mention(text: &str, at: usize) -> Option<(usize, Token<'_>)> {
    if text[..at]
        .chars()
        .next_back()
        .is_some_and(|p| is_word_char(p) || p == '/' || p == '=')
    {
        return None;
    }
    let rest = &text[at + 1..];
    let username_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if username_len == 0 || username_len > MAX_USERNAME_LEN {
        return None;
    }
    let username = &rest[..username_len];
    let after = &rest[username_len..];
    // `@alicé` is not a mention of "alic".
    if after.chars().next().is_some_and(is_word_char) {
        return None;
    }
    let mut end = at + 1 + username_len;
    let mut domain = None;
    if let Some(candidate) = after.strip_prefix('@') {
        let len = candidate
            .find(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(candidate.len());
        let candidate = candidate[..len].trim_end_matches(['.', '-']);
        if candidate.chars().next().is_some_and(char::is_alphanumeric) {
            end += 1 + candidate.len();
            domain = Some(candidate);
        }
    }
    Some((
        end,
        Token::Mention {
            raw: &text[at..end],
            username,
            domain,
        },
    ))
}

/// A hashtag starting at `at` (a `#`): not preceded by a word character or `/`, `&`, `=`,
/// `)` (so URL fragments and `&#39;` are not tags); then word characters, with `·`, `・`
/// and ZWNJ allowed inside; at least one character that is not a digit; at most 100.
fn scan_tag(text: &str, at: usize) -> Option<(usize, Token<'_>)> {
    if text[..at]
        .chars()
        .next_back()
        .is_some_and(|p| is_word_char(p) || matches!(p, '/' | '&' | '=' | ')'))
    {
        return None;
    }
    let rest = &text[at + 1..];
    let mut len = 0;
    for (idx, c) in rest.char_indices() {
        if is_word_char(c) {
            len = idx + c.len_utf8();
        } else if !(len > 0 && is_tag_separator(c)) {
            break;
        }
    }
    let name = &rest[..len];
    if name.is_empty() || name.chars().count() > MAX_TAG_LEN || name.chars().all(char::is_numeric) {
        return None;
    }
    let end = at + 1 + len;
    Some((
        end,
        Token::Tag {
            raw: &text[at..end],
            name,
        },
    ))
}

/// Letters, digits, `_` and combining marks (so a decomposed `café` is one word).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || is_combining_mark(c)
}

fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Characters Mastodon allows inside (not at the ends of) a hashtag.
fn is_tag_separator(c: char) -> bool {
    matches!(c, '\u{00B7}' | '\u{30FB}' | '\u{200C}')
}

fn is_local(domain: Option<&str>, local_domain: &str) -> bool {
    domain.is_none_or(|domain| domain.eq_ignore_ascii_case(local_domain))
}

fn render_token(
    html: &mut String,
    token: Token<'_>,
    local_domain: &str,
    base_url: &str,
    mentions: &HashMap<String, MentionTarget<'_>>,
) {
    match token {
        Token::Text(text) => {
            for (n, line) in text.split('\n').enumerate() {
                if n > 0 {
                    html.push_str("<br />");
                }
                escape_into(html, line);
            }
        }
        Token::Link(url) => render_link(html, url),
        Token::Mention {
            raw,
            username,
            domain,
        } => {
            let target = is_local(domain, local_domain)
                .then(|| mentions.get(&username.to_ascii_lowercase()))
                .flatten();
            match target {
                Some(target) => {
                    html.push_str(r#"<span class="h-card" translate="no"><a href=""#);
                    escape_into(html, target.url);
                    html.push_str(r#"" class="u-url mention">@<span>"#);
                    escape_into(html, target.username);
                    html.push_str("</span></a></span>");
                }
                None => escape_into(html, raw),
            }
        }
        Token::Tag { name, .. } => {
            html.push_str(r#"<a href=""#);
            escape_into(html, base_url);
            html.push_str("/tags/");
            escape_into(html, &name.to_lowercase());
            html.push_str(r#"" class="mention hashtag" rel="tag">#<span>"#);
            escape_into(html, name);
            html.push_str("</span></a>");
        }
    }
}

/// Mastodon's shortened link: `scheme://` (and `www.`) hidden, 30 characters shown, the rest
/// hidden behind an ellipsis.
fn render_link(html: &mut String, url: &str) {
    let prefix_len = ["https://www.", "http://www.", "https://", "http://"]
        .iter()
        .find(|prefix| {
            url.get(..prefix.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
        })
        .map_or(0, |prefix| prefix.len());
    let (prefix, rest) = url.split_at(prefix_len);
    let display_len = rest
        .char_indices()
        .nth(URL_DISPLAY_LEN)
        .map_or(rest.len(), |(idx, _)| idx);
    let (display, suffix) = rest.split_at(display_len);

    html.push_str(r#"<a href=""#);
    escape_into(html, url);
    html.push_str(
        r#"" target="_blank" rel="nofollow noopener" translate="no"><span class="invisible">"#,
    );
    escape_into(html, prefix);
    html.push_str(if suffix.is_empty() {
        r#"</span><span class="">"#
    } else {
        r#"</span><span class="ellipsis">"#
    });
    escape_into(html, display);
    html.push_str(r#"</span><span class="invisible">"#);
    escape_into(html, suffix);
    html.push_str("</span></a>");
}

fn escape_into(html: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            _ => html.push(c),
        }
    }
}

/// Ammonia re-serialises through html5ever, which writes `<br>` and `&nbsp;` and leaves `"`
/// and `'` bare in text; put back Mastodon's `<br />`, a literal U+00A0, `&quot;` and `&#39;`
/// (equivalent HTML, but what
/// clients and tests are used to). html5ever escapes `<` and `>` everywhere and only uses
/// `"` to delimit attributes, so a bare `<`/`>` is always a tag boundary.
fn restore_mastodon_serialisation(html: &str) -> String {
    let html = html.replace("<br>", "<br />").replace("&nbsp;", "\u{a0}");
    let mut out = String::with_capacity(html.len() + 16);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(c);
            }
            '>' => {
                in_tag = false;
                out.push(c);
            }
            '"' if !in_tag => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DOMAIN: &str = "rookery.test";
    const BASE: &str = "https://rookery.test";

    fn targets() -> HashMap<String, MentionTarget<'static>> {
        HashMap::from([
            (
                "alice".to_owned(),
                MentionTarget {
                    username: "Alice",
                    url: "https://rookery.test/@Alice",
                },
            ),
            (
                "bob".to_owned(),
                MentionTarget {
                    username: "bob",
                    url: "https://rookery.test/@bob",
                },
            ),
        ])
    }

    fn html(text: &str) -> String {
        render(text, DOMAIN, BASE, &targets())
    }

    const ALICE: &str = r#"<span class="h-card" translate="no"><a href="https://rookery.test/@Alice" class="u-url mention">@<span>Alice</span></a></span>"#;

    #[test]
    fn renders_mention_hashtag_and_link() {
        assert_eq!(
            html("Hi @alice, see #Rust at https://example.com/docs."),
            format!(
                "<p>Hi {ALICE}, see \
                 <a href=\"https://rookery.test/tags/rust\" class=\"mention hashtag\" rel=\"tag\">#<span>Rust</span></a> at \
                 <a href=\"https://example.com/docs\" target=\"_blank\" rel=\"nofollow noopener\" translate=\"no\">\
                 <span class=\"invisible\">https://</span><span class=\"\">example.com/docs</span><span class=\"invisible\"></span></a>.</p>"
            )
        );
    }

    #[test]
    fn renders_paragraphs_and_line_breaks() {
        assert_eq!(
            html("one\ntwo\r\n\r\nthree\n\n\n\nfour\n"),
            "<p>one<br />two</p><p>three</p><p>four</p>"
        );
        assert_eq!(html("\n\nlead\n"), "<p>lead</p>");
        assert_eq!(html("a\u{a0}b"), "<p>a\u{a0}b</p>");
        assert_eq!(html(""), "");
        assert_eq!(html("  \n\n \t\n"), "");
    }

    #[test]
    fn escapes_html_injection() {
        assert_eq!(
            html("<script>alert(1)</script>"),
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
        );
        assert_eq!(
            html(r#""><img src=x onerror=alert(1)> it's & <b>"#),
            "<p>&quot;&gt;&lt;img src=x onerror=alert(1)&gt; it&#39;s &amp; &lt;b&gt;</p>"
        );
    }

    #[test]
    fn unknown_and_remote_mentions_stay_text() {
        assert_eq!(html("hi @carol"), "<p>hi @carol</p>");
        // A local "bob" exists, but this is another server's bob.
        assert_eq!(html("hi @bob@other.social"), "<p>hi @bob@other.social</p>");
        assert_eq!(
            html("hi @ALICE@Rookery.Test!"),
            format!("<p>hi {ALICE}!</p>")
        );
    }

    #[test]
    fn emails_are_not_mentions() {
        assert_eq!(
            html("mail alice@rookery.test"),
            "<p>mail alice@rookery.test</p>"
        );
        assert_eq!(parse("mail alice@rookery.test", DOMAIN), Parsed::default());
    }

    #[test]
    fn numbers_and_anchors_are_not_tags() {
        assert_eq!(html("issue #123"), "<p>issue #123</p>");
        let p = parse("issue #123 and https://example.com/#anchor", DOMAIN);
        assert!(p.tags.is_empty());
        assert_eq!(p.links, ["https://example.com/#anchor"]);
        assert!(!html("https://example.com/#anchor").contains("hashtag"));
        // Escaped quotes and entities written by the user are not tags either.
        assert!(parse("&#x27; a#b", DOMAIN).tags.is_empty());
        assert_eq!(parse("#1a", DOMAIN).tags, ["1a"]);
    }

    #[test]
    fn dedups_and_lowercases() {
        let p = parse(
            "@Alice @bob #Rust #rust #RUST @alice @alice@rookery.test #Go",
            DOMAIN,
        );
        assert_eq!(p.mentions, ["alice", "bob"]);
        assert_eq!(p.tags, ["rust", "go"]);
    }

    #[test]
    fn local_vs_remote_mentions() {
        let p = parse("@alice@rookery.test @bob@other.social", DOMAIN);
        assert_eq!(p.mentions, ["alice"]);
        // A trailing dot ends the sentence, not the domain.
        let p = parse("ping @alice@rookery.test.", DOMAIN);
        assert_eq!(p.mentions, ["alice"]);
        // Too long, or followed by a non-ASCII letter: not a mention.
        assert!(
            parse(&format!("@{}", "a".repeat(31)), DOMAIN)
                .mentions
                .is_empty()
        );
        assert!(parse("@alicé", DOMAIN).mentions.is_empty());
        // A profile URL is a link, not a mention.
        let p = parse("https://other.social/@carol", DOMAIN);
        assert!(p.mentions.is_empty());
        assert_eq!(p.links, ["https://other.social/@carol"]);
    }

    #[test]
    fn length_counts_urls_and_mentions_like_mastodon() {
        let url = format!("https://example.com/{}", "x".repeat(100));
        assert_eq!(length(&format!("see {url}")), 4 + 23);
        assert_eq!(length("https://a.io"), 23);
        assert_eq!(length("hi @bob@other.social"), "hi @bob".len());
        assert_eq!(length("hi @alice@rookery.test"), "hi @alice".len());
        assert_eq!(length("café #café ✨"), 12);
        assert_eq!(length(""), 0);
    }

    #[test]
    fn long_links_get_an_ellipsis() {
        let out = html("https://www.example.com/a/very/long/path/that/goes/on?x=1&y=2");
        assert_eq!(
            out,
            "<p><a href=\"https://www.example.com/a/very/long/path/that/goes/on?x=1&amp;y=2\" \
             target=\"_blank\" rel=\"nofollow noopener\" translate=\"no\">\
             <span class=\"invisible\">https://www.</span>\
             <span class=\"ellipsis\">example.com/a/very/long/path/t</span>\
             <span class=\"invisible\">hat/goes/on?x=1&amp;y=2</span></a></p>"
        );
        // Exactly 30 characters after the prefix: no ellipsis.
        let out = html("http://abcdefghijklmnopqrstuvwxyz.com");
        assert!(out.contains(
            r#"<span class="invisible">http://</span><span class="">abcdefghijklmnopqrstuvwxyz.com</span><span class="invisible"></span>"#
        ));
    }

    #[test]
    fn unicode_hashtags() {
        let p = parse("#café #Ünïcödé #日本語 #mañana·tarde #naïve", DOMAIN);
        assert_eq!(
            p.tags,
            ["café", "ünïcödé", "日本語", "mañana·tarde", "naïve"]
        );
        assert_eq!(
            html("#Café"),
            "<p><a href=\"https://rookery.test/tags/café\" class=\"mention hashtag\" rel=\"tag\">#<span>Café</span></a></p>"
        );
        // Decomposed (combining accent) stays one tag.
        assert_eq!(parse("#cafe\u{301}!", DOMAIN).tags, ["cafe\u{301}"]);
        // Separators are not kept at the end.
        assert_eq!(parse("#a· b", DOMAIN).tags, ["a"]);
        assert!(
            parse(&format!("#{}", "a".repeat(101)), DOMAIN)
                .tags
                .is_empty()
        );
        assert_eq!(
            parse(&format!("#{}", "a".repeat(100)), DOMAIN).tags.len(),
            1
        );
    }

    #[test]
    fn only_http_links() {
        assert_eq!(html("javascript:alert(1)"), "<p>javascript:alert(1)</p>");
        let p = parse(
            "javascript:alert(1) ftp://example.com/x mailto:a@b.c",
            DOMAIN,
        );
        assert!(p.links.is_empty());
        assert!(!html("ftp://example.com/x").contains("<a"));
        assert_eq!(
            parse("(https://example.com/a) and HTTP://EXAMPLE.COM", DOMAIN).links,
            ["https://example.com/a", "HTTP://EXAMPLE.COM"]
        );
    }

    #[test]
    fn mention_url_is_escaped_and_sanitised() {
        let evil = HashMap::from([(
            "eve".to_owned(),
            MentionTarget {
                username: "eve\"><script>",
                url: "javascript:alert(1)",
            },
        )]);
        let out = render("@eve", DOMAIN, BASE, &evil);
        assert!(!out.contains("javascript"), "{out}");
        assert!(!out.contains("<script"), "{out}");
        assert!(
            out.contains("@<span>eve&quot;&gt;&lt;script&gt;</span>"),
            "{out}"
        );
    }
}
