//! The documentation holds together: README.md and docs/*.md link only to files that exist and to headings that
//! exist in them (GitHub's anchors), their web links are well formed (not fetched: the tests have no network),
//! the README stays a front page (at most `README_MAX_LINES` lines), and nothing of the README as it was before
//! it was split into docs/ was lost (`tests/readme-sections.txt`).

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Pages that other branches are writing and the README links to already. A link to one of them is not checked
/// while the page does not exist. ===> When a page lands, delete its line here: `pending_pages_are_still_missing`
/// fails until then, and from then on its links and anchors are checked like every other. <===
const PENDING_PAGES: &[&str] = &[];

/// The README is the front page; everything else lives in docs/.
const README_MAX_LINES: usize = 220;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

/// README.md and every docs/*.md, as paths relative to the root, sorted.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| Path::new("docs").join(path.file_name().expect("a file name")))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn read(root: &Path, page: &Path) -> String {
    std::fs::read_to_string(root.join(page)).unwrap_or_else(|e| panic!("{}: {e}", page.display()))
}

/// Whether a line opens or closes a fenced code block (up to three spaces, then ``` or ~~~).
fn is_fence(line: &str) -> bool {
    let trimmed = line.trim_start_matches(' ');
    line.len() - trimmed.len() <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~"))
}

/// The text with fenced code blocks blanked out (their lines kept, empty, so that line numbers hold).
fn without_code_blocks(text: &str) -> Vec<String> {
    let mut in_fence = false;
    text.lines()
        .map(|line| {
            if is_fence(line) {
                in_fence = !in_fence;
                String::new()
            } else if in_fence {
                String::new()
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// Inline code spans (a run of backticks up to the next run of the same length) replaced by spaces; newlines kept.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    close = Some(j + other);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.extend(
                    chars[i..end]
                        .iter()
                        .map(|c| if *c == '\n' { '\n' } else { ' ' }),
                );
                i = end;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// A link found in a page: its target as written and the line it starts on.
#[derive(Debug)]
struct Link {
    target: String,
    line: usize,
}

/// Every inline link and image (`[text](target)`, `![alt](target)`) and autolink (`<https://…>`) outside code.
fn links(text: &str) -> Vec<Link> {
    let prose = without_code_spans(&without_code_blocks(text).join("\n"));
    let chars: Vec<char> = prose.chars().collect();
    let line_at = |pos: usize| chars[..pos].iter().filter(|c| **c == '\n').count() + 1;
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                // The matching `]`, brackets nested; then `(` at once, and its matching `)`.
                let mut depth = 0usize;
                let mut j = i;
                let mut close = None;
                while j < chars.len() {
                    match chars[j] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                let Some(close) = close else {
                    i += 1;
                    continue;
                };
                if chars.get(close + 1) != Some(&'(') {
                    i += 1;
                    continue;
                }
                let mut depth = 0usize;
                let mut k = close + 1;
                let mut end = None;
                while k < chars.len() {
                    match chars[k] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(k);
                                break;
                            }
                        }
                        _ => {}
                    }
                    k += 1;
                }
                let Some(end) = end else {
                    i += 1;
                    continue;
                };
                let inside: String = chars[close + 2..end].iter().collect();
                // A title may follow the destination after whitespace: `[a](b "title")`.
                let target = inside
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                found.push(Link {
                    target,
                    line: line_at(i),
                });
                // Links inside the text (an image in a link) are found too: go on after the `[`.
                i += 1;
            }
            '<' => {
                let rest: String = chars[i + 1..].iter().take(2048).collect();
                if (rest.starts_with("http://") || rest.starts_with("https://"))
                    && let Some(end) = rest.find('>')
                {
                    found.push(Link {
                        target: rest[..end].to_string(),
                        line: line_at(i),
                    });
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    found
}

/// GitHub's anchor of a heading: its text as rendered (code spans without their backticks, links as their text),
/// lowercased, punctuation removed except `-` and `_`, each space a `-`.
fn slug(heading: &str) -> String {
    let mut rendered = String::new();
    let mut rest = heading;
    // `[text](url)` renders as `text`.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        rendered.push_str(&rest[..open]);
        rendered.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    rendered.push_str(rest);
    rendered
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The text of every ATX heading outside code blocks, in order.
fn headings(text: &str) -> Vec<String> {
    without_code_blocks(text)
        .iter()
        .filter_map(|line| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
                return None;
            }
            let text = line[hashes..].trim().trim_end_matches('#').trim_end();
            Some(text.to_string())
        })
        .collect()
}

/// Every anchor of a page, with GitHub's `-1`, `-2` … for repeated headings.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    headings(text)
        .iter()
        .map(|heading| {
            let base = slug(heading);
            let count = seen.entry(base.clone()).or_insert(0);
            let anchor = if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            };
            *count += 1;
            anchor
        })
        .collect()
}

/// `a/b/../c` as `a/c`, without touching the file system; `None` when it climbs out of the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Why a web link is not well formed, if it is not: `http(s)://host[:port][/path][?query][#fragment]`, a host
/// of letters, digits, `-` and `.` with a dot in it, no spaces or characters a URL cannot hold unescaped.
fn web_link_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    if let Some(bad) = url.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '<' | '>' | '"' | '`' | '\\' | '{' | '}' | '|' | '^')
    }) {
        return Some(format!("holds {bad:?}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty()
        || !host.contains('.')
        || host.starts_with(['.', '-'])
        || host.ends_with(['.', '-'])
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Some(format!("has no valid host ({host:?})"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Some(format!("has a port that is not a number ({port:?})"));
    }
    if let Some((_, fragment)) = url.split_once('#')
        && fragment.contains('#')
    {
        return Some("has two fragments".to_string());
    }
    None
}

/// What is wrong with one link of `page`, if anything.
fn link_problem(
    root: &Path,
    page: &Path,
    target: &str,
    pages_text: &HashMap<PathBuf, String>,
) -> Option<String> {
    if target.is_empty() {
        return Some("empty target".to_string());
    }
    if target.starts_with("http://") || target.starts_with("https://") {
        return web_link_problem(target).map(|p| format!("web link {p}"));
    }
    if let Some((scheme, _)) = target.split_once(':')
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Some(format!(
            "scheme {scheme:?}: only relative paths, anchors and http(s) links are allowed"
        ));
    }
    let (path_part, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    if path_part.contains('?') {
        return Some("a query in a relative link".to_string());
    }
    let resolved = if path_part.is_empty() {
        page.to_path_buf()
    } else {
        let base = page.parent().unwrap_or(Path::new(""));
        match normalize(&base.join(path_part)) {
            Some(path) => path,
            None => return Some("climbs out of the repository".to_string()),
        }
    };
    let on_disk = root.join(&resolved);
    if !on_disk.exists() {
        let pending = PENDING_PAGES.iter().any(|p| Path::new(p) == resolved);
        if pending {
            return None;
        }
        return Some(format!("{} does not exist", resolved.display()));
    }
    let anchor = anchor?;
    if anchor.is_empty() {
        return Some("an empty anchor".to_string());
    }
    if resolved.extension().is_none_or(|ext| ext != "md") {
        return Some(format!(
            "an anchor into {}, which is not a Markdown page",
            resolved.display()
        ));
    }
    let text = match pages_text.get(&resolved) {
        Some(text) => text.clone(),
        None => read(root, &resolved),
    };
    let anchors = anchors(&text);
    if anchors.iter().any(|a| a == anchor) {
        None
    } else {
        Some(format!(
            "#{anchor} is not a heading of {} (its anchors: {})",
            resolved.display(),
            anchors.join(", ")
        ))
    }
}

#[test]
fn every_link_of_the_readme_and_docs_resolves() {
    let root = root();
    let pages = pages(&root);
    let texts: HashMap<PathBuf, String> =
        pages.iter().map(|p| (p.clone(), read(&root, p))).collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in &pages {
        for link in links(&texts[page]) {
            checked += 1;
            if let Some(problem) = link_problem(&root, page, &link.target, &texts) {
                problems.push(format!(
                    "{}:{}: ({}) {problem}",
                    page.display(),
                    link.line,
                    link.target
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    // The README links to every page of docs/.
    let readme_targets: Vec<String> = links(&texts[Path::new("README.md")])
        .into_iter()
        .map(|l| l.target.split('#').next().unwrap_or_default().to_string())
        .collect();
    for page in pages.iter().filter(|p| p.starts_with("docs")) {
        let target = page.to_string_lossy().replace('\\', "/");
        assert!(
            readme_targets.contains(&target),
            "README.md does not link to {target}"
        );
    }
    assert!(
        checked > 50,
        "only {checked} links found: the parser is broken"
    );
}

#[test]
fn pending_pages_are_still_missing() {
    let root = root();
    let landed: Vec<&&str> = PENDING_PAGES
        .iter()
        .filter(|p| root.join(p).exists())
        .collect();
    assert!(
        landed.is_empty(),
        "{landed:?} exist now: delete them from PENDING_PAGES in tests/docs_links.rs so that their links are checked"
    );
}

#[test]
fn the_readme_is_a_front_page() {
    let root = root();
    let lines = read(&root, Path::new("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail to a page of docs/ and link it"
    );
}

/// Links are written relative to their page: the README's `docs/x` is `x` in docs/, its `events/…` is `../events/…`.
fn normalize_links(line: &str) -> String {
    line.replace("](../", "](").replace("](docs/", "](")
}

#[test]
fn nothing_of_the_old_readme_was_lost() {
    let root = root();
    let list = read(&root, Path::new("tests/readme-sections.txt"));
    let texts: Vec<String> = pages(&root).iter().map(|p| read(&root, p)).collect();
    let lines: Vec<String> = texts
        .iter()
        .flat_map(|text| text.lines().map(normalize_links).collect::<Vec<_>>())
        .collect();
    let headings: Vec<String> = texts.iter().flat_map(|text| headings(text)).collect();
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for entry in list
        .lines()
        .filter(|l| !l.starts_with("# ") && !l.trim().is_empty())
    {
        *wanted.entry(entry).or_insert(0) += 1;
    }
    let mut missing = Vec::new();
    for (entry, times) in &wanted {
        let found = if let Some(heading) = entry.strip_prefix("h ") {
            headings.iter().filter(|h| *h == heading).count()
        } else if let Some(start) = entry.strip_prefix("p ") {
            let start = normalize_links(start);
            lines.iter().filter(|l| l.starts_with(&start)).count()
        } else {
            panic!("tests/readme-sections.txt: {entry:?} is neither `h ` nor `p `");
        };
        if found < *times {
            missing.push(format!("{entry} (wanted {times}, found {found})"));
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} headings and paragraphs of the old README are in neither README.md nor docs/*.md:\n{}",
        missing.len(),
        wanted.len(),
        missing.join("\n")
    );
    assert!(
        wanted.len() > 400,
        "the list holds only {} entries",
        wanted.len()
    );
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(
        slug("Output: `cognito-sync-change/v1`"),
        "output-cognito-sync-changev1"
    );
    assert_eq!(
        slug("Event ids (what is hashed)"),
        "event-ids-what-is-hashed"
    );
    assert_eq!(
        slug("History across the cutover: `pinpoint-backfill`"),
        "history-across-the-cutover-pinpoint-backfill"
    );
    assert_eq!(
        slug("A local Kinesis event source mapping, and the whole stack on one machine"),
        "a-local-kinesis-event-source-mapping-and-the-whole-stack-on-one-machine"
    );
    assert_eq!(
        slug("user_snapshot [export](x.md) größe"),
        "user_snapshot-export-größe"
    );
    assert_eq!(
        anchors("# A\n## Config\n```\n# not a heading\n```\n### Config\n## Config"),
        ["a", "config", "config-1", "config-2"]
    );
    let found: Vec<String> = links("see [a](b.md#c), `[no](x)`, ![i](d.svg \"t\") and <https://example.com/x>\n```\n[no](y)\n```")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert_eq!(found, ["b.md#c", "d.svg", "https://example.com/x"]);
    assert!(web_link_problem("https://example.com/a#b").is_none());
    assert!(web_link_problem("https://exa mple.com").is_some());
    assert!(web_link_problem("https:///path").is_some());
    assert!(web_link_problem("https://localhost").is_some());
}
