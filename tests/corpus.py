"""Ordinary web pages, written for probe's tests: none of them is a blockpage.

Ten kinds of page (news, blog, shop, docs, forum, government notice, NGO report, wiki, error-free landing page,
search results) times a dozen subjects, several of which talk about blocking, censorship, filtering or
restricted content in ordinary prose, the way news about the Pakistani regulator's announcements does.
"""

from __future__ import annotations

SUBJECTS = [
    ("Telecom regulator blocks 1,372 websites", "The regulator said on Tuesday that it had blocked 1,372 "
     "websites, apps and pages selling citizens' personal data, and that 139 more followed in October. No list "
     "was published, and digital rights groups asked which sites were affected and on what legal basis."),
    ("How internet censorship works", "Censors block websites in several ways: DNS tampering returns a wrong "
     "address, IP blocking drops packets, and SNI filtering resets TLS connections. Some ISPs show a blockpage "
     "that says access to the site is restricted; others simply time out."),
    ("Parental controls explained", "Parental control software can filter adult content and restrict access "
     "to games at night. Parents should talk with children about why some sites are blocked at home."),
    ("Monsoon forecast for Lahore", "Heavy rain is expected across Punjab this week. The meteorological "
     "department advised citizens to avoid low-lying areas and to check road closures before travelling."),
    ("Cricket: a famous win at Gaddafi Stadium", "The home side chased 310 with four balls to spare, the "
     "captain scoring an unbeaten century. Fans celebrated late into the night across the city."),
    ("Recipe: chicken karahi", "Heat the oil, add ginger and garlic, then the chicken. Cook tomatoes down "
     "until the oil separates, finish with green chillies, fresh coriander and a pinch of garam masala."),
    ("Court hears petition against social media ban", "Lawyers argued that blocking an entire platform was "
     "disproportionate and that the authority had exceeded its powers. The hearing was adjourned until March."),
    ("VPN use rises after restrictions", "Downloads of VPN apps rose sharply after access to several services "
     "was restricted. Experts warned that free VPNs may sell user data and advised caution."),
    ("Release notes, version 4.2", "This release fixes a crash when the cache is full, improves start-up time "
     "by 30 percent and adds a setting to block third-party cookies by default."),
    ("Annual report on press freedom", "Journalists faced harassment, websites of news outlets were blocked "
     "during protests, and at least two reporters were detained. The report recommends transparency about "
     "every blocking order."),
    ("Firewall configuration guide", "To block incoming traffic on port 23, add a rule to the firewall and "
     "reload it. Denied packets are logged so you can audit what the policy rejected."),
    ("University admissions open", "Applications for the autumn semester are open until 15 June. Students "
     "can upload documents through the portal; incomplete applications will not be processed."),
]

KINDS = ["news", "blog", "shop", "docs", "forum", "notice", "report", "wiki", "landing", "search"]


def _page(kind: str, title: str, text: str, n: int) -> str:
    nav = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(1, 6))
    paragraphs = "".join(f"<p>{text}</p>" for _ in range(1 + n % 3))
    bodies = {
        "news": f'<article><h1>{title}</h1><p class="byline">By Staff Reporter</p>{paragraphs}</article>',
        "blog": f'<div class="post"><h2>{title}</h2><time>2025-10-{n % 28 + 1:02d}</time>{paragraphs}'
                f'<section class="comments"><p>Great post, thanks for sharing!</p></section></div>',
        "shop": f'<div class="product"><h1>{title} (book)</h1><span class="price">Rs. {1000 + n * 37}</span>'
                f'<button>Add to cart</button>{paragraphs}</div>',
        "docs": f'<main><h1>{title}</h1><pre><code>$ example --help</code></pre>{paragraphs}</main>',
        "forum": f'<div class="thread"><h3>{title}</h3><div class="msg"><b>user{n}</b>{paragraphs}</div>'
                 f'<div class="msg"><b>moderator</b><p>Please keep the discussion civil.</p></div></div>',
        "notice": f'<div class="notice"><h2>Public notice: {title}</h2>{paragraphs}<p>Issued by the '
                  f'Information Department.</p></div>',
        "report": f'<section><h1>{title}</h1><table><tr><td>Year</td><td>{2015 + n % 10}</td></tr></table>'
                  f'{paragraphs}</section>',
        "wiki": f'<div id="content"><h1>{title}</h1><div class="toc">Contents</div>{paragraphs}'
                f'<div class="refs"><ol><li>Reference {n}</li></ol></div></div>',
        "landing": f'<header><h1>{title}</h1></header><div class="hero">{paragraphs}</div>'
                   f'<form><input type="email" placeholder="Your email"><button>Subscribe</button></form>',
        "search": f'<div class="results"><h2>Results for "{title}"</h2>'
                  + "".join(f'<div class="r"><a href="/r{i}">{title} - result {i}</a><p>{text[:120]}</p></div>'
                            for i in range(5)) + "</div>",
    }
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} | {kind.title()} '
            f'Site</title><link rel="stylesheet" href="/static/site.css"></head><body><nav><ul>{nav}</ul></nav>'
            f'{bodies[kind]}<footer><p>&copy; 2025 Example {kind.title()} Ltd. All rights reserved. '
            f'<a href="/privacy">Privacy</a> · <a href="/contact">Contact</a></p></footer></body></html>')


def pages() -> list[tuple[str, bytes]]:
    out = []
    for k, kind in enumerate(KINDS):
        for s, (title, text) in enumerate(SUBJECTS):
            out.append((f"{kind}-{s}", _page(kind, title, text, k * len(SUBJECTS) + s).encode("utf-8")))
    return out
