#!/usr/bin/env python3
"""Deterministic benchmark data set for kindsnap (stdlib only, Python >= 3.9).

    python3 benches/gen_dataset.py --out DIR [--entities 200000] [--seed 1]

writes DIR/day1.jsonl, DIR/day2.jsonl and DIR/day3.jsonl (a byte-identical
copy of day2): one entity per line in the Cloud Datastore v1 REST JSON shape,
compact, UTF-8 (non-ASCII written as is).

Kinds (the file is ordered by kind, then by Datastore key order inside a kind:
ancestor path first, ids numerically before names, names by UTF-8 bytes):

  Comment  ~64.5%  child of a Post: path Post:<id>/Comment:<id>; `by` -> User,
                   `replyTo` -> a sibling Comment or null
  Post     25%     numeric id; `author` -> User, `tags` = array of Tag keys
  Tag      0.5%    name key (dash-joined words, some non-ASCII)
  User     10%     3% legacy numeric ids, the rest UUIDv7-style names

Sizes: ~930 bytes per entity on average (186 MB for 200,000 entities) with a
long tail: post bodies are lognormal and a few entities are 20-200 KB.

Day 2 against day 1: exactly 1% of the entities updated (one or two
properties: a counter, a timestamp, sometimes a text edit), 0.2% deleted,
0.5% inserted (new keys at their key-order position), chosen by sequential
sampling over the whole file so the changes are spread uniformly.

Everything is a pure function of (seed, kind, index): keys come from a
splitmix64 hash of the index and each entity's content from a Random seeded
with that hash, so the generator streams (memory stays flat at any size: the
only per-entity state is a 4-byte comment count per post).
"""

import argparse
import array
import base64
import json
import os
import random
import shutil
import sys
import time
import unicodedata

PROJECT = "bench"
PARTITION = {"projectId": PROJECT}

# Kinds in file order: sorted by UTF-8 bytes of the kind name.
COMMENT, POST, TAG, USER = "Comment", "Post", "Tag", "User"
KIND_CODE = {COMMENT: 1, POST: 2, TAG: 3, USER: 4}

# Change rates for day 2.
DELETE_RATE, UPDATE_RATE, INSERT_RATE = 0.002, 0.010, 0.005

# Wall-clock frame: day 1 is taken at DAY1_US; everything was created before.
DAY1_US = 1767225600 * 1_000_000      # 2026-01-01T00:00:00Z
DAY2_US = DAY1_US + 86_400 * 1_000_000
EPOCH_US = 1514764800 * 1_000_000     # 2018-01-01T00:00:00Z (oldest data)
UUID_T0_MS = 1640995200 * 1000        # 2022-01-01: first UUIDv7 user

M64 = (1 << 64) - 1


def mix64(x):
    """splitmix64 finaliser."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


class Hasher:
    def __init__(self, seed):
        self.base = mix64(mix64(seed & M64) ^ 0x6B696E64736E6170)  # "kindsnap"

    def __call__(self, kind_code, index, salt=0):
        return mix64(self.base ^ mix64((kind_code << 56) ^ (salt << 48) ^ index))


# --------------------------------------------------------------------------
# Vocabulary: common English words, syllable pseudo-words for a long Zipf tail
# and a sprinkling of non-ASCII words (accents, Cyrillic, CJK, emoji).

COMMON = """the of and to a in is it you that he was for on are with as i his they
be at one have this from or had by hot word but what some we can out other were
all there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two
has look more day could go come did number sound no most people my over know water
than call first who may down side been now find any new work part take get place
made live where after back little only round man year came show every good me give
our under name very through just form sentence great think say help low line differ
turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must
big high such follow act why ask men change went light kind off need house picture
try us again animal point mother world near build self earth father head stand own
page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start
might story saw far sea draw left late run while press close night real life few
north open seem together next white children begin got walk example ease paper group
always music those both mark often letter until mile river car feet care second book
carry took science eat room friend began idea fish mountain stop once base hear horse
cut sure watch color face wood main enough plain girl usual young ready above ever
red list though feel talk bird soon body dog family direct pose leave song measure
door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard
best hour better true during hundred five remember step early hold west ground
interest reach fast verb sing listen six table travel less morning ten simple several
vowel toward war lay against pattern slow center love person money serve appear road
map rain rule govern pull cold notice voice unit power town fine certain fly fall
lead cry dark machine note wait plan figure star box noun field rest correct able
pound done beauty drive stood contain front teach week final gave green oh quick
develop ocean warm free minute strong special mind behind clear tail produce fact
street inch multiply nothing course stay wheel full force blue object decide surface
deep moon island foot system busy test record boat common gold possible plane stead
dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire
bring yes distant fill east paint language among grand ball yet wave drop heart am
present heavy dance engine position arm wide sail material size vary settle speak
weight general ice matter circle pair include divide syllable felt perhaps pick sudden
count square reason length represent art subject region energy hunt probable bed
brother egg ride cell believe fraction forest sit race window store summer train sleep
prove lone exercise wall catch mount wish sky board joy winter sat written wild
instrument kept glass grass cow job edge sign visit past soft fun bright gas weather
month million bear finish happy hope flower clothe strange gone jump baby eight village
meet root buy raise solve metal whether push seven paragraph third shall held hair
describe cook floor either result burn hill safe cat century consider type law bit
coast copy phrase silent tall sand soil roll temperature finger industry value fight
lie beat excite natural view sense ear else quite broke case middle kill son lake
moment scale loud spring observe child straight consonant nation dictionary milk speed
method organ pay age section dress cloud surprise quiet stone tiny climb cool design
poor lot experiment bottom key iron single stick flat twenty skin smile crease hole
trade melody trip office receive row mouth exact symbol die least trouble shout except
wrote seed tone join suggest clean break lady yard rise bad blow oil blood touch grew
cent mix team wire cost lost brown wear garden equal sent choose fell fit flow fair
bank collect save control decimal gentle woman captain practice separate difficult
doctor please protect noon whose locate ring character insect caught period indicate
radio spoke atom human history effect electric expect crop modern element hit student
corner party supply bone rail imagine provide agree thus capital chair danger fruit
rich thick soldier process operate guess necessary sharp wing create neighbor wash
bat rather crowd corn compare poem string bell depend meat rub tube famous dollar
stream fear sight thin triangle planet hurry chief colony clock mine tie enter major
fresh search send yellow gun allow print dead spot desert suit current lift rose
continue block chart hat sell success company subtract event particular deal swim
term opposite wife shoe shoulder spread arrange camp invent cotton born determine
quart nine truck noise level chance gather shop stretch throw shine property column
molecule select wrong gray repeat require broad prepare salt nose plural anger claim
continent oxygen sugar death pretty skill women season solution magnet silver thank
branch match suffix especially fig afraid huge sister steel discuss forward similar
guide experience score apple bought led pitch coat mass card band rope slip win dream
evening condition feed tool total basic smell valley nor double seat arrive master
track parent shore division sheet substance favor connect post spend chord fat glad
original share station dad bread charge proper bar offer segment slave duck instant
market degree populate chick dear enemy reply drink occur support speech nature range
steam motion path liquid log meant quotient teeth shell neck""".split()

NON_ASCII = ("café naïve résumé über straße données niño zürich façade crème "
             "smörgåsbord jalapeño mañana déjà fiancée øresund łódź köln "
             "привет данные 東京 データ 日本語 北京 서울 ελλάδα שלום 😀 🚀 ✓ €").split()

SYLLABLES = ("ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri "
             "ro ru sa se si so su ta te ti to tu va ve vi vo ba be bi bo da de di "
             "do ga go pa pe pi po za zo an en in on ar er or al el il st tr pr "
             "br gr th sh ch").split()


def build_vocab():
    r = random.Random(20240601)  # the language is the same for every seed
    seen = set(COMMON) | set(NON_ASCII)
    pseudo = []
    while len(pseudo) < 3000:
        w = "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            pseudo.append(w)
    words = list(dict.fromkeys(COMMON))          # ranked by frequency
    # Non-ASCII words sit in the middle of the frequency ranking.
    words = words[:300] + NON_ASCII + words[300:] + pseudo
    # Zipf population: sampling uniformly from POP gives Zipf(1) frequencies.
    size = 60000
    weights = [1.0 / (rank + 2.7) for rank in range(len(words))]
    total = sum(weights)
    pop = []
    for w, wt in zip(words, weights):
        pop.extend([w] * max(1, round(wt / total * size)))
    return words, pop


WORDS, POP = build_vocab()

TAG_WORDS = sorted(set(COMMON[:260] + NON_ASCII[:18]),
                   key=lambda s: s.encode("utf-8"))

FIRST = ("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth "
         "William Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen "
         "José Zoë Björn Søren Chloé Łukasz François Ana Mei Yuki Oluwaseun Priya "
         "Ahmed Fatima Ingrid Noémie Mateo Leïla Sven Aiko Raúl Dmitri Olga").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
        "Hernández Lopez Gonzalez Wilson Anderson Müller Schröder Østergaard Núñez "
        "Kowalski Dubois Rossi Tanaka Kim Nguyen Singh Okafor Ivanova Larsen "
        "Fernández Côté").split()
CJK_NAMES = "山田太郎 佐藤花子 李明 王芳 김민준 鈴木一郎 陳美玲".split()
DOMAINS = "example.com mail.example.org corp.example.net example.co.uk".split()
LANGS = "en en en en en de fr es ja pt it nl sv pl".split()
THEMES = "light dark system high-contrast".split()
ROLES = "reader writer editor moderator admin".split()
SOURCES = "web ios android api import".split()
FLAGS = "pinned featured nsfw draft locked promoted".split()
COLORS = "#e11d48 #2563eb #16a34a #f59e0b #7c3aed #0891b2 #64748b".split()


def ascii_fold(s):
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if c.isascii() and c.isalnum()).lower() or "user"


# --------------------------------------------------------------------------
# Value helpers (Datastore v1 REST JSON shapes).

def ts_str(us):
    s, frac = divmod(us, 1_000_000)
    t = time.gmtime(s)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{frac:06d}Z")


def s_(v, exclude=False, meaning=None):
    d = {"stringValue": v}
    if exclude:
        d["excludeFromIndexes"] = True
    if meaning is not None:
        d["meaning"] = meaning
    return d


def i_(v, meaning=None):
    d = {"integerValue": str(v)}
    if meaning is not None:
        d["meaning"] = meaning
    return d


def f_(v):
    return {"doubleValue": v}


def b_(v):
    return {"booleanValue": v}


def t_(us):
    return {"timestampValue": ts_str(us)}


def k_(key):
    return {"keyValue": key}


def arr(values):
    return {"arrayValue": {"values": values}} if values else {"arrayValue": {}}


NULL = {"nullValue": None}


def key_of(path):
    return {"partitionId": PARTITION, "path": path}


def text(rng, nbytes):
    """Natural-ish text of about nbytes UTF-8 bytes."""
    n = max(1, nbytes * 10 // 51)   # ~5.1 bytes per word and separator
    words = rng.choices(POP, k=n)
    out = []
    i = 0
    randint = rng.randint
    while i < n:
        j = i + randint(4, 18)
        s = words[i:j]
        out.append(s[0].capitalize() + (" " if len(s) > 1 else "")
                   + " ".join(s[1:]) + ("." if randint(0, 9) else "?"))
        i = j
    return " ".join(out)


def title(rng):
    return " ".join(w.capitalize() if k == 0 else w
                    for k, w in enumerate(rng.choices(POP, k=rng.randint(3, 10))))


def blob(rng, lo, hi):
    return {"blobValue": base64.b64encode(rng.randbytes(rng.randint(lo, hi))).decode()}


def past_us(rng, lo_us=EPOCH_US, hi_us=DAY1_US):
    return rng.randrange(lo_us, hi_us)


# --------------------------------------------------------------------------
# The data set.

class Dataset:
    def __init__(self, entities, seed):
        self.seed = seed
        self.h = Hasher(seed)
        n = entities
        self.n_tags = max(1, round(n * 0.005))
        self.n_users = max(1, round(n * 0.10))
        self.n_posts = max(1, round(n * 0.25))
        self.n_comments = max(0, n - self.n_tags - self.n_users - self.n_posts)
        self.n_legacy_users = self.n_users * 3 // 100
        # Tag names: fixed-width tuples of words from TAG_WORDS, so byte order
        # of the names follows the numeric combination index.
        v = len(TAG_WORDS)
        self.tag_digits = 1
        while v ** self.tag_digits < 4 * self.n_tags:
            self.tag_digits += 1
        self._comment_counts()

    # ---- comment distribution: exponential with a few hot posts, exact sum.
    def _comment_counts(self):
        r = random.Random(self.h(0, 0, 1))
        n_posts, target = self.n_posts, self.n_comments
        mean = target / n_posts if n_posts else 0
        counts = array.array("I", bytes(4 * n_posts))
        total = 0
        for p in range(n_posts):
            c = int(r.expovariate(1.0 / mean)) if mean > 0 else 0
            if r.random() < 0.001:
                c *= 40                       # a hot thread
            counts[p] = c
            total += c
        while total < target:
            counts[r.randrange(n_posts)] += 1
            total += 1
        while total > target:
            p = r.randrange(n_posts)
            if counts[p]:
                counts[p] -= 1
                total -= 1
        self.comment_counts = counts

    # ---- keys (pure functions of the index)
    def post_id(self, p, inserted=False):
        hv = self.h(KIND_CODE[POST], p, 1 if inserted else 0)
        return 1 + p * 1000 + (500 if inserted else 0) + hv % 500

    def post_key(self, p, inserted=False):
        return key_of([{"kind": POST, "id": str(self.post_id(p, inserted))}])

    def comment_id(self, p, j, inserted=False):
        base = (self.h(KIND_CODE[POST], p, 7) % 9_000_000 + 1_000_000) * 100_000
        hv = self.h(KIND_CODE[COMMENT], (p << 24) | j, 1 if inserted else 0)
        return base + (j + 1) * 1000 + (500 if inserted else 0) + hv % 500

    def comment_key(self, p, j, inserted=False, post_id=None):
        pid = self.post_id(p) if post_id is None else post_id
        return key_of([{"kind": POST, "id": str(pid)},
                       {"kind": COMMENT, "id": str(self.comment_id(p, j, inserted))}])

    def user_elem(self, u, inserted=False):
        hv = self.h(KIND_CODE[USER], u, 1 if inserted else 0)
        if u < self.n_legacy_users:
            return {"kind": USER, "id": str(1 + u * 100 + (50 if inserted else 0) + hv % 50)}
        s = u - self.n_legacy_users
        ms = UUID_T0_MS + s * 60_000 + (30_000 if inserted else 0) + hv % 30_000
        rnd = hv >> 2
        x = (f"{ms:012x}7{rnd & 0xFFF:03x}{8 + ((rnd >> 12) & 3):x}"
             f"{(rnd >> 14) & 0xFFF:03x}{(rnd >> 26) & 0xFFFFFFFFFFFF:012x}")
        return {"kind": USER, "name": f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"}

    def user_key(self, u, inserted=False):
        return key_of([self.user_elem(u, inserted)])

    def tag_name(self, t, inserted=False):
        hv = self.h(KIND_CODE[TAG], t, 1 if inserted else 0)
        c = t * 4 + (2 if inserted else 0) + hv % 2
        v = len(TAG_WORDS)
        parts = []
        for _ in range(self.tag_digits):
            c, d = divmod(c, v)
            parts.append(TAG_WORDS[d])
        return "-".join(reversed(parts))

    def tag_key(self, t, inserted=False):
        return key_of([{"kind": TAG, "name": self.tag_name(t, inserted)}])

    def rng(self, kind, index, inserted=False):
        return random.Random(self.h(KIND_CODE[kind], index, 3 if inserted else 2))

    def random_user_key(self, rng):
        # Activity is skewed: low indices (old users) are more active.
        u = min(self.n_users - 1, int(self.n_users * rng.random() ** 1.6))
        return k_(self.user_key(u))

    # ---- entity bodies
    def user_props(self, rng, legacy):
        if rng.random() < 0.05:
            display = rng.choice(CJK_NAMES)
            handle = f"user{rng.randrange(10**6)}"
        else:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            display = f"{first} {last}"
            handle = f"{ascii_fold(first)}.{ascii_fold(last)}{rng.randrange(1000)}"
        created = past_us(rng)
        email = f"{handle}@{rng.choice(DOMAINS)}"
        p = {
            "email": s_(email, meaning=8) if legacy else s_(email),
            "displayName": s_(display),
            "bio": s_(text(rng, int(rng.lognormvariate(4.6, 0.8))), exclude=True),
            "createdAt": t_(created),
            "lastLoginAt": t_(past_us(rng, created, DAY1_US)),
            "loginCount": i_(int(rng.expovariate(1 / 80))),
            "karma": f_(round(rng.gauss(50, 20), 3)),
            "verified": b_(rng.random() < 0.7),
            "avatar": dict(blob(rng, 24, 96), excludeFromIndexes=True),
            "home": ({"geoPointValue": {"latitude": round(rng.uniform(-60, 70), 6),
                                        "longitude": round(rng.uniform(-180, 180), 6)}}
                     if rng.random() < 0.4 else NULL),
            "roles": arr([s_(r) for r in rng.sample(ROLES, rng.randint(0, 3))]),
            "prefs": {"entityValue": {"properties": {
                "theme": s_(rng.choice(THEMES)),
                "lang": s_(rng.choice(LANGS)),
                "notify": b_(rng.random() < 0.5),
                "digestHour": i_(rng.randrange(24)),
            }}},
            "deletedAt": NULL,
        }
        if legacy:
            p["phone"] = s_(f"+1-555-{rng.randrange(10**7):07d}", meaning=11)
        return p

    def post_props(self, rng):
        if rng.random() < 0.0003:
            body_len = rng.randint(20_000, 200_000)       # the long tail
        else:
            body_len = min(200_000, int(rng.lognormvariate(5.7, 1.0)))
        created = past_us(rng)
        body = text(rng, body_len)
        n_tags = min(self.n_tags, rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5)))
        tags = [k_(self.tag_key(t)) for t in
                sorted(rng.sample(range(self.n_tags), n_tags))] if n_tags else []
        p = {
            "title": s_(title(rng)),
            "body": s_(body, exclude=True),
            "author": self.random_user_key(rng),
            "tags": arr(tags),
            "views": i_(int(rng.paretovariate(1.2) * 10)),
            "score": f_(round(rng.random(), 4)),
            "published": b_(rng.random() < 0.9),
            "createdAt": t_(created),
            "updatedAt": t_(past_us(rng, created, DAY1_US)),
            "lang": s_(rng.choice(LANGS)),
            "meta": {"entityValue": {"properties": {
                "wordCount": i_(body.count(" ") + 1),
                "source": s_(rng.choice(SOURCES)),
                "flags": arr([s_(f) for f in rng.sample(FLAGS, rng.choice((0, 0, 0, 1, 2)))]),
            }}},
            "archivedAt": NULL,
        }
        if rng.random() < 0.3:
            p["loc"] = {"geoPointValue": {"latitude": round(rng.uniform(-60, 70), 6),
                                          "longitude": round(rng.uniform(-180, 180), 6)}}
        if rng.random() < 0.2:
            p["thumb"] = dict(blob(rng, 32, 160), excludeFromIndexes=True)
        if rng.random() < 0.05:
            p["rating"] = i_(rng.randint(1, 5), meaning=13)   # GD_RATING
        return p

    def comment_props(self, rng, p, j, post_id):
        created = past_us(rng)
        p_ = {
            "by": self.random_user_key(rng),
            "text": s_(text(rng, int(rng.lognormvariate(4.5, 0.8))), exclude=True),
            "createdAt": t_(created),
            "likes": i_(int(rng.expovariate(1 / 4))),
            "spam": b_(rng.random() < 0.02),
            "sentiment": f_(round(rng.uniform(-1, 1), 5)),
            "replyTo": (k_(self.comment_key(p, rng.randrange(j), post_id=post_id))
                        if j and rng.random() < 0.4 else NULL),
        }
        return p_

    def tag_props(self, rng, name):
        return {
            "label": s_(name.replace("-", " ")),
            "description": s_(text(rng, rng.randint(40, 300)), exclude=True),
            "postCount": i_(int(rng.expovariate(1 / 60))),
            "color": s_(rng.choice(COLORS)),
            "featured": b_(rng.random() < 0.05),
            "createdAt": t_(past_us(rng)),
        }

    # ---- day-2 edits: return a new property map (never mutate the input)
    def update(self, kind, props, rng):
        p = dict(props)
        now = t_(rng.randrange(DAY1_US, DAY2_US))
        roll = rng.random()
        if kind == POST:
            if roll < 0.6:
                p["views"] = i_(int(props["views"]["integerValue"]) + rng.randint(1, 500))
            elif roll < 0.85:
                p["score"] = f_(round(rng.random(), 4))
            else:
                p["body"] = s_(edit_text(rng, props["body"]["stringValue"]), exclude=True)
            p["updatedAt"] = now
        elif kind == COMMENT:
            if roll < 0.7:
                p["likes"] = i_(int(props["likes"]["integerValue"]) + rng.randint(1, 20))
            elif roll < 0.9:
                p["text"] = s_(edit_text(rng, props["text"]["stringValue"]), exclude=True)
                p["editedAt"] = now
            else:
                p["spam"] = b_(not props["spam"]["booleanValue"])
        elif kind == USER:
            if roll < 0.8:
                p["lastLoginAt"] = now
                p["loginCount"] = i_(int(props["loginCount"]["integerValue"]) + 1)
            else:
                p["bio"] = s_(edit_text(rng, props["bio"]["stringValue"]), exclude=True)
        else:  # TAG
            p["postCount"] = i_(int(props["postCount"]["integerValue"]) + rng.randint(1, 9))
        return p

    # ---- the stream: (kind, index, key, day1_props_thunk) in file order
    def slots(self):
        """Yields (kind, index, key, make_props(inserted) ) in file order.

        Each slot has one day-1 entity and room for one day-2 insertion right
        after it in key order.
        """
        counts = self.comment_counts
        for p in range(self.n_posts):
            c = counts[p]
            if not c:
                continue
            pid = self.post_id(p)
            for j in range(c):
                yield COMMENT, (p, j, pid)
        for p in range(self.n_posts):
            yield POST, p
        for t in range(self.n_tags):
            yield TAG, t
        for u in range(self.n_users):
            yield USER, u

    def entity(self, kind, idx, inserted=False):
        """Returns (key, props) for a slot's day-1 entity or its insertion."""
        if kind == COMMENT:
            p, j, pid = idx
            rng = self.rng(COMMENT, (p << 24) | j, inserted)
            key = self.comment_key(p, j, inserted, post_id=pid)
            # A new comment may reply to the comment it follows.
            return key, self.comment_props(rng, p, j + (1 if inserted else 0), pid)
        rng = self.rng(kind, idx, inserted)
        if kind == POST:
            return self.post_key(idx, inserted), self.post_props(rng)
        if kind == TAG:
            name = self.tag_name(idx, inserted)
            return key_of([{"kind": TAG, "name": name}]), self.tag_props(rng, name)
        return (self.user_key(idx, inserted),
                self.user_props(rng, idx < self.n_legacy_users))


def edit_text(rng, s):
    """A small edit: replace a sentence-sized span, or append a sentence."""
    add = text(rng, rng.randint(30, 200))
    if len(s) < 80 or rng.random() < 0.4:
        return s + " " + add
    a = rng.randrange(len(s) // 2)
    b = min(len(s), a + rng.randint(20, 200))
    return s[:a] + add + s[b:]


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                          check_circular=False).encode


def line(key, props):
    return _dumps({"key": key, "properties": props}) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.entities < 10:
        ap.error("--entities must be at least 10")

    t0 = time.monotonic()
    ds = Dataset(args.entities, args.seed)
    os.makedirs(args.out, exist_ok=True)
    p1 = os.path.join(args.out, "day1.jsonl")
    p2 = os.path.join(args.out, "day2.jsonl")
    p3 = os.path.join(args.out, "day3.jsonl")

    # Exact sequential sampling (multivariate hypergeometric) over all slots.
    total = args.entities
    left = total
    n_del = round(total * DELETE_RATE)
    n_upd = round(total * UPDATE_RATE)
    n_ins = round(total * INSERT_RATE)
    sampler = random.Random(ds.h(0, 0, 2))
    randrange = sampler.randrange

    stats = {k: [0, 0, 0, 0, 0] for k in KIND_CODE}  # day1, upd, del, ins, bytes1
    size1 = size2 = 0
    largest = (0, "")
    buf = 1 << 20
    with open(p1 + ".tmp", "w", encoding="utf-8", newline="\n", buffering=buf) as f1, \
         open(p2 + ".tmp", "w", encoding="utf-8", newline="\n", buffering=buf) as f2:
        w1, w2 = f1.write, f2.write
        for kind, idx in ds.slots():
            st = stats[kind]
            key, props = ds.entity(kind, idx)
            l1 = line(key, props)
            w1(l1)
            n1 = len(l1.encode("utf-8")) if not l1.isascii() else len(l1)
            size1 += n1
            st[0] += 1
            st[4] += n1
            if n1 > largest[0]:
                largest = (n1, "/".join(f"{e['kind']}:{e.get('id', e.get('name'))}"
                                        for e in key["path"]))
            x = randrange(left)
            if x < n_del:
                n_del -= 1
                st[2] += 1
            elif x < n_del + n_upd:
                n_upd -= 1
                st[1] += 1
                ridx = idx if kind != COMMENT else (idx[0] << 24) | idx[1]
                urng = random.Random(ds.h(KIND_CODE[kind], ridx, 4))
                l2 = line(key, ds.update(kind, props, urng))
                w2(l2)
                size2 += len(l2.encode("utf-8"))
            else:
                w2(l1)
                size2 += n1
            if randrange(left) < n_ins:
                n_ins -= 1
                st[3] += 1
                l2 = line(*ds.entity(kind, idx, inserted=True))
                w2(l2)
                size2 += len(l2.encode("utf-8"))
            left -= 1
    os.replace(p1 + ".tmp", p1)
    os.replace(p2 + ".tmp", p2)
    shutil.copyfile(p2, p3 + ".tmp")
    os.replace(p3 + ".tmp", p3)
    dt = time.monotonic() - t0

    err = sys.stderr
    n1 = sum(s[0] for s in stats.values())
    upd = sum(s[1] for s in stats.values())
    dele = sum(s[2] for s in stats.values())
    ins = sum(s[3] for s in stats.values())
    print(f"gen_dataset: seed {args.seed}, {n1} entities in {dt:.1f}s "
          f"({n1 / dt:,.0f} entities/s)", file=err)
    for k, s in stats.items():
        print(f"  {k:8} day1 {s[0]:>9,}  avg {s[4] / max(1, s[0]):>6.0f} B   "
              f"day2: updated {s[1]:>6,} deleted {s[2]:>5,} inserted {s[3]:>5,}", file=err)
    print(f"  day1.jsonl  {size1:>13,} bytes  {n1:,} entities "
          f"(avg {size1 / n1:.0f} B, largest {largest[0]:,} B: {largest[1]})", file=err)
    print(f"  day2.jsonl  {size2:>13,} bytes  {n1 - dele + ins:,} entities "
          f"({upd:,} updated, {dele:,} deleted, {ins:,} inserted)", file=err)
    print(f"  day3.jsonl  {size2:>13,} bytes  (copy of day2)", file=err)


if __name__ == "__main__":
    main()
