//! `rrnet-radius voucher print`: a batch of vouchers as an A4 sheet of cards to
//! cut out and sell (HTML, printed from any browser), or as CSV for a print shop.
//!
//! Each card shows the code, the password when it is not the code, the plan and
//! what it is worth, the price when the plan has one, and, given the hotspot's
//! login address, a QR code that logs the phone that scans it straight in.
//! Everything taken from the database is HTML-escaped: plan names and prices are
//! free text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use qrcode::{Color, EcLevel, QrCode};

use super::output::{csv_field, ts};
use crate::model::{Plan, Voucher, VoucherState};
use crate::store::Store;
use crate::units::{format_duration, format_size};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum PrintFormat {
    /// An A4 page of cards with QR codes, to print from a browser.
    #[default]
    Html,
    /// One line per voucher, for mail merge or a print shop.
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct PrintArgs {
    /// Batch name given to `voucher generate --batch`.
    #[arg(long)]
    pub batch: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: PrintFormat,
    /// The hotspot's address as customers' phones reach it, e.g. `http://hotspot.lan`
    /// (the hotspot profile's dns-name). Adds a QR code of
    /// URL/login?username=CODE&password=PASSWORD to every card; needs `http-pap`
    /// in the hotspot profile's login-by.
    #[arg(long)]
    pub login_url: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// One printed card, with every field as text still to be escaped.
#[derive(Debug, Clone)]
pub struct Card {
    pub code: String,
    /// Shown only when it differs from the code.
    pub password: Option<String>,
    pub plan: String,
    pub price: Option<String>,
    /// What the plan is worth, one short line each ("1h of use", "1 GiB").
    pub terms: Vec<String>,
    /// The hotspot login link the QR code carries.
    pub login_link: Option<String>,
}

/// Escape text for HTML element content and double-quoted attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// Percent-encode a query value: everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The hotspot login base from `--login-url`: http(s) only, without a trailing
/// `/` or `/login`, so both `http://hotspot.lan` and `http://hotspot.lan/login/` work.
pub fn login_base(url: &str) -> anyhow::Result<String> {
    let u = url.trim();
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| anyhow!("--login-url {url:?}: expected http://HOST or https://HOST"))?;
    if rest.is_empty()
        || rest.starts_with('/')
        || u.contains(['?', '#'])
        || u.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("--login-url {url:?}: expected the hotspot's address, e.g. http://hotspot.lan");
    }
    let base = u.trim_end_matches('/');
    Ok(base.strip_suffix("/login").unwrap_or(base).to_string())
}

pub fn login_link(base: &str, code: &str, password: &str) -> String {
    format!(
        "{base}/login?username={}&password={}",
        url_encode(code),
        url_encode(password)
    )
}

/// What a plan is worth, as short lines for a card.
pub fn plan_terms(p: &Plan) -> Vec<String> {
    let mut t = Vec::new();
    if let Some(q) = p.time_quota {
        t.push(format!("{} of use", format_duration(q)));
    }
    if let Some(v) = p.validity {
        t.push(format!("valid {} from first login", format_duration(v)));
    }
    if let Some(d) = p.data_quota {
        t.push(format_size(d));
    }
    if let Some(r) = &p.rate_limit {
        t.push(format!("speed {r}"));
    }
    if p.shared_users > 1 {
        t.push(format!("{} devices at once", p.shared_users));
    }
    if let Some(e) = p.expires_at {
        // The date part of RFC 3339 is enough on a card.
        t.push(format!("use by {}", &ts(Some(e))[..10]));
    }
    if t.is_empty() {
        t.push("unlimited".into());
    }
    t
}

/// The QR code as an inline SVG: one path of unit squares over a white
/// background with the 4-module quiet zone the standard asks for. Error
/// correction M survives a smudge or a fold.
pub fn qr_svg(text: &str) -> anyhow::Result<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| anyhow!("cannot make a QR code of {} bytes: {e}", text.len()))?;
    let w = code.width();
    let quiet = 4;
    let size = w + 2 * quiet;
    let mut d = String::new();
    for (i, c) in code.to_colors().iter().enumerate() {
        if *c == Color::Dark {
            d.push_str(&format!("M{} {}h1v1h-1z", i % w + quiet, i / w + quiet));
        }
    }
    Ok(format!(
        "<svg class=\"qr\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code: hotspot login\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{d}\"/></svg>"
    ))
}

const STYLE: &str = r#"
@page { size: A4; margin: 8mm; }
@media screen { body { margin: 8mm; } }
* { box-sizing: border-box; }
body { margin: 0; font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #000; }
h1 { font-size: 9pt; font-weight: normal; margin: 0 0 2mm 0; color: #444; }
.sheet { display: grid; grid-template-columns: repeat(3, 1fr); gap: 2mm; }
.card { border: 0.3mm dashed #777; height: 52mm; padding: 3mm; display: flex; gap: 2mm;
        break-inside: avoid; page-break-inside: avoid; overflow: hidden; }
.text { flex: 1; min-width: 0; display: flex; flex-direction: column; gap: 0.8mm; }
.plan { font-size: 9pt; font-weight: bold; }
.label { font-size: 6.5pt; color: #444; text-transform: uppercase; letter-spacing: 0.2mm; }
.code { font-family: "DejaVu Sans Mono", "Courier New", monospace; font-size: 13pt; font-weight: bold;
        letter-spacing: 0.4mm; word-break: break-all; }
.terms { font-size: 7.5pt; margin: 0; padding: 0; list-style: none; }
.price { font-size: 11pt; font-weight: bold; margin-top: auto; }
.qr { width: 24mm; height: 24mm; flex: none; align-self: center; }
"#;

/// The whole printable page.
pub fn render_html(batch: &str, cards: &[Card]) -> anyhow::Result<String> {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str(&format!(
        "<title>Vouchers: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        html_escape(batch)
    ));
    h.push_str(&format!(
        "<h1>Batch {} — {} vouchers</h1>\n<main class=\"sheet\">\n",
        html_escape(batch),
        cards.len()
    ));
    for c in cards {
        h.push_str("<section class=\"card\">\n<div class=\"text\">\n");
        h.push_str(&format!(
            "<div class=\"plan\">{}</div>\n",
            html_escape(&c.plan)
        ));
        h.push_str(&format!(
            "<div class=\"label\">Code</div><div class=\"code\">{}</div>\n",
            html_escape(&c.code)
        ));
        if let Some(p) = &c.password {
            h.push_str(&format!(
                "<div class=\"label\">Password</div><div class=\"code\">{}</div>\n",
                html_escape(p)
            ));
        }
        h.push_str("<ul class=\"terms\">");
        for t in &c.terms {
            h.push_str(&format!("<li>{}</li>", html_escape(t)));
        }
        h.push_str("</ul>\n");
        if let Some(p) = &c.price {
            h.push_str(&format!("<div class=\"price\">{}</div>\n", html_escape(p)));
        }
        h.push_str("</div>\n");
        if let Some(link) = &c.login_link {
            h.push_str(&qr_svg(link)?);
            h.push('\n');
        }
        h.push_str("</section>\n");
    }
    h.push_str("</main>\n</body>\n</html>\n");
    Ok(h)
}

pub fn render_csv(cards: &[Card]) -> String {
    let mut s = String::from("code,password,plan,price,terms,login_url\n");
    for c in cards {
        s.push_str(&format!(
            "{},{},{},{},{},{}\n",
            csv_field(&c.code),
            csv_field(c.password.as_deref().unwrap_or(&c.code)),
            csv_field(&c.plan),
            csv_field(c.price.as_deref().unwrap_or("")),
            csv_field(&c.terms.join("; ")),
            csv_field(c.login_link.as_deref().unwrap_or("")),
        ));
    }
    s
}

pub fn cards(vouchers: &[Voucher], plans: &HashMap<String, Plan>, base: Option<&str>) -> Vec<Card> {
    vouchers
        .iter()
        .map(|v| {
            let plan = plans.get(&v.plan_name);
            Card {
                code: v.code.clone(),
                password: (v.password != v.code).then(|| v.password.clone()),
                plan: v.plan_name.clone(),
                price: plan.and_then(|p| p.price.clone()),
                terms: plan.map(plan_terms).unwrap_or_default(),
                login_link: base.map(|b| login_link(b, &v.code, &v.password)),
            }
        })
        .collect()
}

pub async fn run(
    store: Arc<dyn Store>,
    scope: &super::admin::Scope,
    a: &PrintArgs,
) -> anyhow::Result<()> {
    let base = a.login_url.as_deref().map(login_base).transpose()?;
    // With --tenant, only that tenant's vouchers (batch names are the
    // operators' own and may repeat across tenants).
    let all: Vec<Voucher> = store
        .list_vouchers(None, Some(&a.batch))
        .await?
        .into_iter()
        .filter(|v| scope.shows(v.tenant_id))
        .collect();
    if all.is_empty() {
        bail!(
            "batch {:?} has no vouchers (see `rrnet-radius voucher list --batch NAME`)",
            a.batch
        );
    }
    let (vouchers, revoked): (Vec<Voucher>, Vec<Voucher>) = all
        .into_iter()
        .partition(|v| v.state == VoucherState::Active);
    if !revoked.is_empty() {
        eprintln!(
            "note: {} revoked voucher(s) of batch {} not printed",
            revoked.len(),
            a.batch
        );
    }
    if vouchers.is_empty() {
        bail!("every voucher of batch {:?} is revoked", a.batch);
    }
    let mut plans = HashMap::new();
    for v in &vouchers {
        if !plans.contains_key(&v.plan_name) {
            plans.insert(v.plan_name.clone(), store.get_plan(&v.plan_name).await?);
        }
    }
    let cards = cards(&vouchers, &plans, base.as_deref());
    let out = match a.format {
        PrintFormat::Html => {
            if base.is_none() {
                eprintln!("note: no --login-url, so the cards carry no QR code");
            }
            render_html(&a.batch, &cards)?
        }
        PrintFormat::Csv => render_csv(&cards),
    };
    match &a.output {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} vouchers to {}", cards.len(), path.display());
        }
        None => print!("{out}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_encodes() {
        assert_eq!(
            html_escape(r#"<b>"Tom & Jerry's"</b>"#),
            "&lt;b&gt;&quot;Tom &amp; Jerry&#39;s&quot;&lt;/b&gt;"
        );
        assert_eq!(url_encode("AB 12&x=é"), "AB%2012%26x%3D%C3%A9");
        assert_eq!(
            login_link("http://hs.lan", "A&B", "p w"),
            "http://hs.lan/login?username=A%26B&password=p%20w"
        );
    }

    #[test]
    fn login_bases() {
        assert_eq!(login_base("http://hs.lan/").unwrap(), "http://hs.lan");
        assert_eq!(
            login_base("https://hs.lan/login").unwrap(),
            "https://hs.lan"
        );
        assert!(login_base("hs.lan").is_err());
        assert!(login_base("http://hs.lan/?x=1").is_err());
        assert!(login_base("http://").is_err());
    }

    #[test]
    fn qr_is_an_svg_path() {
        let svg = qr_svg("http://hs.lan/login?username=ABCD2345&password=ABCD2345").unwrap();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(svg.contains("h1v1h-1z"));
    }
}
