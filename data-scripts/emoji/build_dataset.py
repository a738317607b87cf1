#!/usr/bin/env python3
"""Builds the emoji captions dataset from npm tarballs (run by fetch_emoji.sh).

Reads the pinned tarballs that data-scripts/fetch_emoji.sh downloaded and
checked, and writes a Karpathy-layout dataset into --out:

    dataset_emoji.json   {"dataset": "emoji", "images": [{"filename",
                          "filepath": "images", "split", "sentences":
                          [{"raw", "tokens", "imgid", "sentid"}], "sentids",
                          "imgid", "emoji", "codepoint", "name", "style",
                          "category", "subcategory", ...}]}
    images/<style>_<codepoint>.png   64x64 RGB, composited on white
    LICENSES.md, licenses/           sources, licences and attributions
    summary.json                     counts (also printed)
    .complete                        marker: build key + image count

Sources (versions, integrity and licences: fetch_emoji.sh and LICENSES.md):
  * emoji-datasource-twitter: Twemoji 64 px PNGs (CC-BY 4.0) and emoji.json
    (the emoji list with category, subcategory, image names; MIT);
  * emoji-datasource-google: Noto Emoji 64 px PNGs (Apache-2.0);
  * openmoji: OpenMoji colour SVGs (CC-BY-SA 4.0), rasterised with resvg;
  * cldr-annotations-full and cldr-annotations-derived-full: Unicode CLDR
    English names (`tts`) and keywords (`default`) (Unicode-3.0).

Which emoji are kept (every drop is counted in summary.json):
  * entries of emoji.json, which lists skin-tone variants only inside their
    base emoji (never used here) and has no regional-indicator letters;
  * dropped: the Component category (skin-tone swatches); country and
    subdivision flags (their CLDR keywords are only "flag", so captions would
    differ by a country name alone, and no training image can teach what an
    unseen country's flag looks like; the 8 other flags such as the chequered,
    white, rainbow or pirate flag are kept); "facing right" sequences (mirror
    images of a kept base emoji); anything without a CLDR English name;
  * per style, images that are pixel-identical or nearly so (mean squared
    difference <= 10 on 0..255 RGB) to another kept emoji of the same style
    (Twemoji draws every family combination alike, OpenMoji draws several
    "man X" like "X"): the emoji of fewest code points, then the earliest in
    CLDR order, keeps that style's image, the others lose that style (an emoji
    left with no style is dropped).

Captions (up to 5 per image, lowercase, the same for every style of one emoji,
never naming the artistic style): the CLDR name; the name in a sentence
("an emoji of a grinning face"); the name with a few CLDR keywords; the
subcategory as a phrase ("a smiling face: grinning face", or "angry face
emoji" when the phrase would only repeat the name); the keywords alone
("an emoji about cheerful, happy and laugh"). Keyword choice and templates are
picked by a hash of the code point, so builds are identical.

Split (what makes retrieval a real test): emoji *identities* are held out.
A hash of the code-point string puts ~10% of identities in val, ~20% in test,
the rest in train. Train has its identities in every style they have; val and
test have each held-out identity in exactly ONE style, rotating over the
styles in CLDR order, so (1) val/test emoji are never seen in training in any
style, and (2) no two test images share a caption set (names are unique), so
retrieval has exactly one right image for each caption. Style balance in
val/test is ~1/3 each.

--small N keeps N identities (~10% val, ~20% test, at least one each), the
first of each split by a second hash: a subset of the full set's emoji, each in
the same split (train images are the same files; the held-out style rotates
over the smaller set, so every style stays in every split).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
from collections import Counter, defaultdict

import numpy as np
import resvg_py
from PIL import Image

SIZE = 64
VAL_FRACTION = 0.10
TEST_FRACTION = 0.20
NEAR_DUPLICATE_MSE = 10.0
STYLES = ("twemoji", "noto", "openmoji")
# Words that would name the artistic style or its maker in a caption.
STYLE_WORDS = ("twemoji", "twitter", "noto", "google", "openmoji")
# Expected ranges of what the pinned packages hold (fail loudly outside them).
PNG_RANGE = (3500, 4200)  # img/<set>/64/*.png in emoji-datasource-<set>
SVG_RANGE = (4000, 5000)  # color/svg/*.svg in openmoji
EMOJI_JSON_MIN = 1800
CLDR_MIN = 1500
CLDR_DERIVED_MIN = 2000
FULL_IDENTITIES_RANGE = (1400, 1800)


def fail(msg: str) -> None:
    sys.exit(f"emoji: {msg}")


def unit_hash(salt: str, text: str) -> float:
    """A number in [0, 1) from a SHA-256 of salt:text (deterministic)."""
    h = hashlib.sha256(f"{salt}:{text}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


# --- reading the tarballs ----------------------------------------------------


def read_members(path: str, wanted) -> dict[str, bytes]:
    """Reads the regular files of a .tgz whose name satisfies `wanted`."""
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if m.isfile() and wanted(m.name):
                    out[m.name] = tar.extractfile(m).read()
    except (OSError, tarfile.TarError) as e:
        fail(f"{path}: cannot read the tarball ({e})")
    return out


def need(members: dict[str, bytes], name: str, tgz: str) -> bytes:
    if name not in members:
        fail(f"{tgz}: no {name} in the tarball")
    return members[name]


def check_range(what: str, n: int, lo: int, hi: int) -> None:
    if not lo <= n <= hi:
        fail(f"{what}: {n}, expected {lo}..{hi}")


def strip_fe0f(unified: str) -> str:
    return "-".join(p for p in unified.upper().split("-") if p != "FE0F")


def to_char(unified: str) -> str:
    return "".join(chr(int(p, 16)) for p in unified.split("-"))


# --- images --------------------------------------------------------------------


def on_white(im: Image.Image, what: str) -> Image.Image:
    im = im.convert("RGBA")
    if im.size != (SIZE, SIZE):
        fail(f"{what}: image is {im.size[0]}x{im.size[1]}, expected {SIZE}x{SIZE}")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    bg.alpha_composite(im)
    return bg.convert("RGB")


def render_svg(svg: bytes, what: str) -> Image.Image:
    try:
        png = resvg_py.svg_to_bytes(
            svg_string=svg.decode("utf-8"), width=SIZE, height=SIZE, skip_system_fonts=True
        )
        return on_white(Image.open(io.BytesIO(bytes(png))), what)
    except Exception as e:  # resvg raises plain exceptions
        fail(f"{what}: cannot rasterise the SVG ({e})")


def decode_png(data: bytes, what: str) -> Image.Image:
    try:
        return on_white(Image.open(io.BytesIO(data)), what)
    except OSError as e:
        fail(f"{what}: cannot decode the PNG ({e})")


# --- captions ------------------------------------------------------------------

SUBCATEGORY_PHRASE = {
    "face-smiling": "a smiling face", "face-affection": "an affectionate face",
    "face-tongue": "a face with a tongue", "face-hand": "a face with a hand",
    "face-neutral-skeptical": "a neutral or skeptical face", "face-sleepy": "a sleepy face",
    "face-unwell": "an unwell face", "face-hat": "a face with a hat",
    "face-glasses": "a face with glasses", "face-concerned": "a concerned face",
    "face-negative": "an angry face", "face-costume": "a costume face",
    "cat-face": "a cat face", "monkey-face": "a monkey face", "heart": "a heart",
    "emotion": "a symbol of an emotion",
    "hand-fingers-open": "an open hand", "hand-fingers-partial": "a hand gesture",
    "hand-single-finger": "a pointing finger", "hand-fingers-closed": "a closed hand",
    "hands": "a pair of hands", "hand-prop": "a hand holding something",
    "body-parts": "a part of the body", "person": "a person",
    "person-gesture": "a person making a gesture", "person-role": "a person in a job or role",
    "person-fantasy": "a fantasy character", "person-activity": "a person doing something",
    "person-sport": "a person doing a sport", "person-resting": "a person resting",
    "family": "a family or a couple", "person-symbol": "a symbol of people",
    "animal-mammal": "a mammal", "animal-bird": "a bird", "animal-amphibian": "an amphibian",
    "animal-reptile": "a reptile", "animal-marine": "a sea animal", "animal-bug": "a bug",
    "plant-flower": "a flower", "plant-other": "a plant",
    "food-fruit": "a fruit", "food-vegetable": "a vegetable", "food-prepared": "a dish of food",
    "food-asian": "asian food", "food-sweet": "something sweet", "drink": "a drink",
    "dishware": "something to eat or drink with",
    "place-map": "a map", "place-geographic": "a landscape", "place-building": "a building",
    "place-religious": "a place of worship", "place-other": "a place",
    "transport-ground": "a land vehicle", "transport-water": "a boat",
    "transport-air": "an aircraft", "hotel": "something in a hotel",
    "time": "a clock or a timer", "sky & weather": "the sky or the weather",
    "event": "a celebration", "award-medal": "an award", "sport": "something for sport",
    "game": "a game", "arts & crafts": "arts and crafts",
    "clothing": "something to wear", "sound": "a sound", "music": "music",
    "musical-instrument": "a musical instrument", "phone": "a phone", "computer": "a computer",
    "light & video": "light or video", "book-paper": "books or paper", "money": "money",
    "mail": "mail", "writing": "something to write with", "office": "an office supply",
    "lock": "a lock", "tool": "a tool", "science": "a science object",
    "medical": "something medical", "household": "a household object",
    "other-object": "an object",
    "transport-sign": "a transport sign", "warning": "a warning sign", "arrow": "an arrow",
    "religion": "a religious symbol", "zodiac": "a zodiac sign",
    "av-symbol": "a media control symbol", "gender": "a gender symbol",
    "math": "a math symbol", "punctuation": "a punctuation mark",
    "currency": "a currency symbol", "other-symbol": "a symbol", "keycap": "a keycap",
    "alphanum": "a letter or number sign", "geometric": "a geometric shape", "flag": "a flag",
}

INTROS = ("an emoji of", "a picture of", "an icon of", "a drawing of", "a small image of")
NO_ARTICLE = {
    "rice", "sushi", "popcorn", "spaghetti", "bread", "butter", "salt", "falafel",
    "garlic", "broccoli", "fire", "fog", "tennis", "lacrosse", "bowling", "oden",
    "curry rice", "cooked rice", "field hockey", "ice hockey", "cricket game",
}


def clean_text(s: str) -> str:
    s = s.lower().replace("\u2019", "'").replace("\u2018", "'")
    s = re.sub(r"[\u201c\u201d\"]", "", s)
    return re.sub(r"\s+", " ", s).strip()


def join_and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_name(tts: str) -> str:
    """The CLDR name as a phrase: 'man: red hair' -> 'man with red hair'."""
    name = clean_text(tts)
    if ": " not in name:
        return name
    head, tail = name.split(": ", 1)
    parts = tail.split(", ")
    if head == "keycap":
        return f"keycap {tail}"
    if tail == "bald":
        return f"bald {head}"
    if tail.endswith("hair"):
        return f"{head} with {tail}"
    if head == "family":
        return "family of " + join_and(parts)
    return f"{head}: {join_and(parts)}"


def with_article(phrase: str) -> str:
    first = phrase.split(" ")[0]
    plural = (phrase.endswith("s") and not phrase.endswith(("ss", "us", "is"))) or first in (
        "people", "men", "women", "two", "three")
    if phrase in NO_ARTICLE or plural or first[0].isdigit() or not first[0].isalpha():
        return phrase
    vowel = first[0] in "aeio" or (first[0] == "u" and not first.startswith(("uni", "use", "uk")))
    if first.startswith(("one", "eu")):
        vowel = False
    return ("an " if vowel else "a ") + phrase


def keywords_for(name: str, keywords: list[str], unified: str) -> list[str]:
    """CLDR keywords that add something to the name, in a hashed order."""
    name_words = set(re.findall(r"[\w'+-]+", name))
    out = []
    for k in keywords:
        k = clean_text(k)
        if not k or k in out or "skin tone" in k:
            continue
        if set(re.findall(r"[\w'+-]+", k)) <= name_words:
            continue
        out.append(k)
    return sorted(out, key=lambda k: unit_hash("emoji-keyword", unified + ":" + k))


def make_captions(e: dict) -> list[str]:
    u = e["unified"]
    name = caption_name(e["tts"])
    a_name = with_article(name)
    kws = keywords_for(name, e["keywords"], u)
    caps = [name]
    intro = INTROS[int(unit_hash("emoji-intro", u) * len(INTROS))]
    caps.append(f"{intro} {a_name}")
    if kws:
        caps.append(", ".join([a_name] + kws[:3]))
    phrase = SUBCATEGORY_PHRASE.get(e["subcategory"])
    name_words = set(name.split())
    if phrase and not set(phrase.split()) - {"a", "an", "the"} <= name_words:
        caps.append(f"{phrase}: {name}")
    else:  # "an angry face: angry face" would say nothing new
        caps.append(f"{name} emoji")
    if kws:
        rest = kws[3:6] if len(kws) > 3 else kws
        caps.append("an emoji about " + join_and(rest))
    out = []
    for c in caps:
        if c not in out:
            out.append(c)
    for c in out:
        for w in STYLE_WORDS:
            if re.search(rf"\b{w}\b", c):
                fail(f"caption {c!r} of {u} names a style or vendor ({w})")
    return out[:5]


# --- main ----------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="an empty folder to write into")
    ap.add_argument("--pkg", nargs=4, action="append", required=True,
                    metavar=("NAME", "VERSION", "INTEGRITY", "TGZ"))
    ap.add_argument("--small", type=int, default=0, help="keep only N emoji identities")
    ap.add_argument("--key", required=True, help="build key written to the marker")
    args = ap.parse_args()
    t0 = time.time()
    pkgs = {name: {"version": v, "integrity": i, "tgz": p} for name, v, i, p in args.pkg}
    for name in ("emoji-datasource-twitter", "emoji-datasource-google", "openmoji",
                 "cldr-annotations-full", "cldr-annotations-derived-full"):
        if name not in pkgs:
            fail(f"--pkg {name} is missing")

    # -- read and check the packages
    def pkg_tgz(name):
        return pkgs[name]["tgz"]

    tw_tgz, go_tgz, om_tgz = (pkg_tgz(n) for n in (
        "emoji-datasource-twitter", "emoji-datasource-google", "openmoji"))
    meta_files = ("package/emoji.json", "package/LICENSE", "package/package.json")
    tw = read_members(tw_tgz, lambda n: n in meta_files or n.startswith("package/img/twitter/64/"))
    go = read_members(go_tgz, lambda n: n in meta_files or n.startswith("package/img/google/64/"))
    om = read_members(om_tgz, lambda n: n.startswith("package/color/svg/") or n in (
        "package/data/openmoji.csv", "package/LICENSE.txt", "package/package.json"))
    cl_tgz = pkg_tgz("cldr-annotations-full")
    cd_tgz = pkg_tgz("cldr-annotations-derived-full")
    cl_json = "package/annotations/en/annotations.json"
    cd_json = "package/annotationsDerived/en/annotations.json"
    cl = read_members(cl_tgz, lambda n: n in (cl_json, "package/LICENSE", "package/package.json"))
    cd = read_members(cd_tgz, lambda n: n in (cd_json, "package/LICENSE"))

    declared = {}
    for name, members, tgz in (("emoji-datasource-twitter", tw, tw_tgz),
                               ("emoji-datasource-google", go, go_tgz),
                               ("openmoji", om, om_tgz), ("cldr-annotations-full", cl, cl_tgz)):
        pj = json.loads(need(members, "package/package.json", tgz))
        if pj.get("version") != pkgs[name]["version"]:
            fail(f"{tgz}: package.json says version {pj.get('version')}, "
                 f"expected {pkgs[name]['version']}")
        declared[name] = pj.get("license")

    emoji_list = json.loads(need(tw, "package/emoji.json", tw_tgz))
    if json.loads(need(go, "package/emoji.json", go_tgz)) != emoji_list:
        fail(f"{go_tgz} and {tw_tgz} have different emoji.json files")
    if len(emoji_list) < EMOJI_JSON_MIN:
        fail(f"{tw_tgz}: emoji.json lists {len(emoji_list)} emoji, expected >= {EMOJI_JSON_MIN}")
    pngs = {}
    for style, members, folder, tgz in (("twemoji", tw, "twitter", tw_tgz),
                                        ("noto", go, "google", go_tgz)):
        prefix = f"package/img/{folder}/64/"
        files = {n[len(prefix):]: b for n, b in members.items()
                 if n.startswith(prefix) and n.endswith(".png")}
        check_range(f"{tgz}: PNGs in img/{folder}/64", len(files), *PNG_RANGE)
        pngs[style] = files
    svgs = {strip_fe0f(n.rsplit("/", 1)[1][:-4]): b for n, b in om.items()
            if n.startswith("package/color/svg/") and n.endswith(".svg")}
    check_range(f"{om_tgz}: SVGs in color/svg", len(svgs), *SVG_RANGE)
    om_author = {}
    for row in csv.DictReader(io.StringIO(need(om, "package/data/openmoji.csv", om_tgz).decode())):
        om_author[strip_fe0f(row["hexcode"])] = row["openmoji_author"].strip()
    ann = json.loads(need(cl, cl_json, cl_tgz))["annotations"]["annotations"]
    der = json.loads(need(cd, cd_json, cd_tgz))["annotationsDerived"]["annotations"]
    if len(ann) < CLDR_MIN or len(der) < CLDR_DERIVED_MIN:
        fail(f"CLDR English annotations: {len(ann)} + {len(der)} derived entries, "
             f"expected >= {CLDR_MIN} + {CLDR_DERIVED_MIN}")
    cldr = {}
    for table in (der, ann):  # the plain annotations win over the derived ones
        for k, v in table.items():
            k = k.replace("\ufe0f", "")
            if v.get("tts"):
                cldr[k] = (v["tts"][0], v.get("default", []))

    # -- choose the emoji identities
    drops = Counter()
    entries = []
    for e in emoji_list:
        u = e["unified"].upper()
        if e["category"] == "Component":
            drops["component (skin-tone swatch)"] += 1
            continue
        if e["subcategory"] in ("country-flag", "subdivision-flag"):
            drops["country or subdivision flag"] += 1
            continue
        if "200D-27A1" in u:
            drops["facing-right variant"] += 1
            continue
        c = cldr.get(to_char(strip_fe0f(u)))
        if c is None:
            drops["no CLDR English name"] += 1
            continue
        entries.append({"unified": u, "char": to_char(u), "tts": c[0], "keywords": c[1],
                        "category": e["category"], "subcategory": e["subcategory"],
                        "sort_order": e["sort_order"], "image": e["image"],
                        "has": {"twemoji": e["has_img_twitter"], "noto": e["has_img_google"]}})
    entries.sort(key=lambda e: e["sort_order"])
    names = Counter(e["tts"] for e in entries)
    if names.most_common(1)[0][1] > 1:
        fail(f"CLDR names are not unique: {names.most_common(3)}")

    # -- images of every style, then per-style near-duplicate removal
    images = {s: {} for s in STYLES}
    missing = Counter()
    for e in entries:
        u = e["unified"]
        for style in ("twemoji", "noto"):
            data = pngs[style].get(e["image"])
            if e["has"][style] and data is not None:
                images[style][u] = decode_png(data, f"{style} {e['image']}")
            else:
                missing[style] += 1
        svg = svgs.get(strip_fe0f(u))
        if svg is not None:
            images["openmoji"][u] = render_svg(svg, f"openmoji {u}")
        else:
            missing["openmoji"] += 1
    # Who keeps a shared image: the emoji of fewest code points (the generic
    # "family" rather than "family: man, woman, boy"), then the earliest in CLDR order.
    order = {e["unified"]: (len(strip_fe0f(e["unified"]).split("-")), i)
             for i, e in enumerate(entries)}
    dup_losses = Counter()
    for style in STYLES:
        us = sorted(images[style], key=order.get)
        a = np.stack([np.asarray(images[style][u], dtype=np.float32).reshape(-1) for u in us])
        sq = (a * a).sum(1)
        mse = (sq[:, None] + sq[None, :] - 2.0 * (a @ a.T)) / a.shape[1]
        lost = set()
        for i in range(len(us)):  # the preferred emoji keeps the image
            if us[i] in lost:
                continue
            for j in np.nonzero(mse[i, i + 1:] <= NEAR_DUPLICATE_MSE)[0]:
                lost.add(us[i + 1 + j])
        for u in lost:
            del images[style][u]
        dup_losses[style] = len(lost)
    kept = []
    for e in entries:
        e["styles"] = [s for s in STYLES if e["unified"] in images[s]]
        if e["styles"]:
            kept.append(e)
        else:
            drops["no image left in any style"] += 1
    entries = kept
    if not args.small:
        check_range("emoji identities kept", len(entries), *FULL_IDENTITIES_RANGE)

    # -- split by identity
    for e in entries:
        h = unit_hash("vl-distill-emoji-split", e["unified"])
        e["split"] = "val" if h < VAL_FRACTION else "test" if h < VAL_FRACTION + TEST_FRACTION \
            else "train"
    if args.small:
        n = args.small
        if n < 3:
            fail("--small needs N >= 3 (one identity per split at least)")
        n_val = max(1, round(n * VAL_FRACTION))
        n_test = max(1, round(n * TEST_FRACTION))
        want = {"val": n_val, "test": n_test, "train": n - n_val - n_test}
        chosen = set()
        for split, k in want.items():
            pool = sorted((e for e in entries if e["split"] == split),
                          key=lambda e: unit_hash("vl-distill-emoji-small", e["unified"]))
            if len(pool) < k:
                fail(f"--small {n}: only {len(pool)} {split} identities")
            chosen.update(e["unified"] for e in pool[:k])
        entries = [e for e in entries if e["unified"] in chosen]
    rotation = Counter()
    for e in entries:  # CLDR order
        if e["split"] == "train":
            e["use"] = e["styles"]
        else:
            i = rotation[e["split"]]
            rotation[e["split"]] += 1
            want_style = STYLES[i % len(STYLES)]
            e["use"] = [want_style] if want_style in e["styles"] else [
                next(s for s in STYLES[i % 3:] + STYLES[:i % 3] if s in e["styles"])]

    # -- write
    out = args.out
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    records = []
    sentid = 0
    for e in entries:
        caps = make_captions(e)
        e["captions"] = caps
        for style in e["use"]:
            fname = f"{style}_{e['unified'].lower()}.png"
            images[style][e["unified"]].save(os.path.join(out, "images", fname), format="PNG")
            imgid = len(records)
            sents = []
            for c in caps:
                sents.append({"raw": c, "tokens": re.findall(r"[\w'+-]+", c),
                              "imgid": imgid, "sentid": sentid})
                sentid += 1
            rec = {"filename": fname, "filepath": "images", "split": e["split"],
                   "imgid": imgid, "sentids": [s["sentid"] for s in sents], "sentences": sents,
                   "emoji": e["char"], "codepoint": e["unified"], "name": clean_text(e["tts"]),
                   "style": style, "category": e["category"], "subcategory": e["subcategory"]}
            if style == "openmoji" and om_author.get(strip_fe0f(e["unified"])):
                rec["author"] = om_author[strip_fe0f(e["unified"])]
            records.append(rec)
    with open(os.path.join(out, "dataset_emoji.json"), "w", encoding="utf-8") as f:
        f.write('{"dataset": "emoji", "images": [\n')
        f.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in records))
        f.write("\n]}\n")

    licenses_dir = os.path.join(out, "licenses")
    os.makedirs(licenses_dir)
    copies = {
        "emoji-datasource-MIT.txt": need(tw, "package/LICENSE", tw_tgz),
        "OpenMoji-CC-BY-SA-4.0.txt": need(om, "package/LICENSE.txt", om_tgz),
        "Unicode-3.0.txt": need(cl, "package/LICENSE", cl_tgz),
    }
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "Apache-2.0.txt"), "rb") as f:
        copies["Apache-2.0.txt"] = f.read()
    for fname, data in copies.items():
        with open(os.path.join(licenses_dir, fname), "wb") as f:
            f.write(data)

    # -- check what was written (by reading it back)
    with open(os.path.join(out, "dataset_emoji.json"), encoding="utf-8") as f:
        back = json.load(f)["images"]
    if len(back) != len(records):
        fail("dataset_emoji.json does not read back")
    per = Counter()
    for r in back:
        if not r["sentences"] or not all(s["raw"].strip() for s in r["sentences"]):
            fail(f"{r['filename']}: no caption")
        p = os.path.join(out, r["filepath"], r["filename"])
        with Image.open(p) as im:
            if im.size != (SIZE, SIZE) or im.mode != "RGB":
                fail(f"{p}: {im.size} {im.mode}, expected ({SIZE}, {SIZE}) RGB")
        per[(r["split"], r["style"])] += 1
    split_count = Counter(r["split"] for r in back)
    for split in ("train", "val", "test"):
        if not split_count[split]:
            fail(f"split {split} is empty")
        for style in STYLES:
            if not per[(split, style)]:
                fail(f"split {split} has no {style} image")
    for split in ("val", "test"):
        capsets = Counter(tuple(s["raw"] for s in r["sentences"])
                          for r in back if r["split"] == split)
        if capsets.most_common(1)[0][1] > 1:
            fail(f"two {split} images share a caption set: {capsets.most_common(1)[0][0]}")
        ids = [r["codepoint"] for r in back if r["split"] == split]
        if len(ids) != len(set(ids)):
            fail(f"an emoji has more than one {split} image")
    train_ids = {r["codepoint"] for r in back if r["split"] == "train"}
    if train_ids & {r["codepoint"] for r in back if r["split"] != "train"}:
        fail("an emoji is in train and in val or test")
    n_files = len(os.listdir(os.path.join(out, "images")))
    if n_files != len(back):
        fail(f"images/ holds {n_files} files, the JSON names {len(back)}")

    identities = Counter(e["split"] for e in entries)
    summary = {
        "images": len(back),
        "identities": len(entries),
        "small": args.small or None,
        "images_per_split": {s: split_count[s] for s in ("train", "val", "test")},
        "identities_per_split": {s: identities[s] for s in ("train", "val", "test")},
        "images_per_split_and_style": {
            s: {st: per[(s, st)] for st in STYLES} for s in ("train", "val", "test")},
        "captions": sum(len(r["sentences"]) for r in back),
        "dropped_identities": dict(drops),
        "missing_style_images": dict(missing),
        "near_duplicate_images_removed": dict(dup_losses),
        "megabytes": round(sum(os.path.getsize(os.path.join(dp, f))
                               for dp, _, fs in os.walk(out) for f in fs) / 1e6, 1),
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    write_licenses(out, pkgs, declared, summary)
    with open(os.path.join(out, ".complete"), "w") as f:
        f.write(args.key + "\n" + f"images {len(back)}\n")

    print(f"emoji: {summary['images']} images of {summary['identities']} emoji, "
          f"{summary['captions']} captions, {summary['megabytes']} MB "
          f"({time.time() - t0:.1f} s)")
    print(f"emoji: {'split':<6} {'emoji':>6} {'images':>7}  " + "  ".join(f"{s:>8}" for s in STYLES))
    for s in ("train", "val", "test"):
        print(f"emoji: {s:<6} {identities[s]:>6} {split_count[s]:>7}  "
              + "  ".join(f"{per[(s, st)]:>8}" for st in STYLES))
    print(f"emoji: dropped {dict(drops)}; near-duplicate images removed {dict(dup_losses)}; "
          f"images missing in a style {dict(missing)}")


def write_licenses(out: str, pkgs: dict, declared: dict, summary: dict) -> None:
    def v(name):
        return f"`{name}@{pkgs[name]['version']}` (npm, integrity `{pkgs[name]['integrity']}`)"

    st = summary["images_per_split_and_style"]
    count = {s: sum(st[sp][s] for sp in st) for s in STYLES}
    text = f"""# Licences and attributions of the emoji dataset

This folder was generated by `data-scripts/fetch_emoji.sh` of vl-distill from
the npm packages below. The images are the original artworks, composited on a
white background, with transparency removed, and re-encoded as 64×64 RGB PNGs
(the OpenMoji images are also rasterised from SVG). The captions are made from
the Unicode CLDR annotations. Each image's `style` field in
`dataset_emoji.json` says which artwork it is.

## Twemoji images (`images/twemoji_*.png`, {count['twemoji']} files)

- Source: {v('emoji-datasource-twitter')}, `img/twitter/64/`.
- Licence: **CC-BY 4.0** (https://creativecommons.org/licenses/by/4.0/).
- Attribution: Twemoji graphics, Copyright 2019 Twitter, Inc and other
  contributors (the Twemoji project, maintained at github.com/jdecked/twemoji).
  Graphics licensed under CC-BY 4.0. Changes: composited on white, alpha
  removed, re-encoded as PNG.

## Noto Emoji images (`images/noto_*.png`, {count['noto']} files)

- Source: {v('emoji-datasource-google')}, `img/google/64/`.
- Licence: **Apache License 2.0**, full text in `licenses/Apache-2.0.txt`.
- Notice: Noto Emoji, Copyright Google Inc. (github.com/googlefonts/noto-emoji),
  licensed under the Apache License, Version 2.0. Changes: composited on white,
  alpha removed, re-encoded as PNG.

## OpenMoji images (`images/openmoji_*.png`, {count['openmoji']} files)

- Source: {v('openmoji')}, `color/svg/`; each image's designer is in the
  `author` field of `dataset_emoji.json` (from the package's
  `data/openmoji.csv`).
- Licence: **CC BY-SA 4.0** (https://creativecommons.org/licenses/by-sa/4.0/),
  full text in `licenses/OpenMoji-CC-BY-SA-4.0.txt`.
- Attribution: All emojis designed by OpenMoji – the open-source emoji and icon
  project (https://openmoji.org/). License: CC BY-SA 4.0. Changes: rasterised
  from SVG to 64×64 with resvg, composited on white.
- **Share-alike**: these derived OpenMoji PNGs are themselves licensed under
  CC BY-SA 4.0; whoever redistributes them (or adapts them) must keep them
  under CC BY-SA 4.0 or a compatible licence.

## Emoji list, categories and image packaging

- Source: `emoji.json` of {v('emoji-datasource-twitter')}
  (identical in `emoji-datasource-google`), from the emoji-data project
  (github.com/iamcal/emoji-data): the emoji list, category and subcategory.
- Licence of the package: **{declared['emoji-datasource-twitter']}**, Copyright
  (c) 2013 Cal Henderson; full text in `licenses/emoji-datasource-MIT.txt`. (The
  package's README gives the image licences above: Twitter images CC-BY 4.0,
  Google/Noto images Apache 2.0. Its Apple and Facebook images are not
  permissively licensed and are not used.)

## Names and keywords (captions)

- Source: {v('cldr-annotations-full')}, `annotations/en/annotations.json`, and
  {v('cldr-annotations-derived-full')},
  `annotationsDerived/en/annotations.json`: Unicode CLDR English emoji names
  (`tts`) and keywords (`default`).
- Licence: **{declared['cldr-annotations-full']}** (Unicode License v3), Copyright
  © 2004-2026 Unicode, Inc.; full text in `licenses/Unicode-3.0.txt`.
"""
    with open(os.path.join(out, "LICENSES.md"), "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
