"""Draw Backstop's labelled real-text sets from real-support-dev.jsonl (seeded, reproducible).

Whole conversations are drawn, so labellers read every message in its context. Each source is
split into a development part and a blind part by conversation. Output: batch files of about
600 messages, each message with an `id` of "<conversation>#<index in conversation>".
"""
import collections, json, random, sys

SRC = sys.argv[1]
rng = random.Random(20261130)
convs = collections.OrderedDict()
for line in open(SRC, encoding="utf-8"):
    d = json.loads(line)
    convs.setdefault(d["conversation"], []).append(d)

by_source = collections.defaultdict(list)
for cid, msgs in convs.items():
    by_source[msgs[0]["source"]].append(cid)

# IBM: every conversation (real brand agents), 200 of them blind.
ibm = sorted(by_source["ibm-twitter-cdp"])
rng.shuffle(ibm)
ibm_blind, ibm_dev = ibm[:200], ibm[200:]

# ABCD: 110 conversations, three in four from flows where something went wrong for the customer.
PROBLEM = {"missing", "refund_status", "refund_update", "status_delivery_time", "bad_price_competitor",
           "bad_price_yesterday", "mistimed_billing_never_bought", "mistimed_billing_already_returned",
           "slow_speed", "promo_code_invalid", "promo_code_out_of_date", "status_credit_missing",
           "out_of_stock_one_item", "out_of_stock_general", "manage_dispute_bill", "status_mystery_fee",
           "return_stain", "search_results", "shopping_cart", "credit_card", "status_service_removed",
           "recover_password", "reset_2fa", "recover_username"}
abcd = sorted(by_source["abcd"])
rng.shuffle(abcd)
prob = [c for c in abcd if convs[c][0]["meta"].get("subflow") in PROBLEM][:83]
other = [c for c in abcd if convs[c][0]["meta"].get("subflow") not in PROBLEM][:27]
abcd_pick = prob + other
rng.shuffle(abcd_pick)
abcd_blind, abcd_dev = abcd_pick[:25], abcd_pick[25:]

# Airline tweets: stratified by the crowd's negative reason, plus neutral and positive ones.
QUOTA = {"Customer Service Issue": 350, "Late Flight": 200, "Cancelled Flight": 150, "Lost Luggage": 120,
         "Flight Booking Problems": 100, "Can't Tell": 100, "Bad Flight": 60, "Flight Attendant Complaints": 50,
         "longlines": 30, "Damaged Luggage": 20, None: 120}
air = sorted(by_source["airline-tweets"])
rng.shuffle(air)
air_pick = []
for reason, n in QUOTA.items():
    air_pick += [c for c in air if convs[c][0]["meta"].get("negativereason") == reason][:n]
rng.shuffle(air_pick)
air_blind, air_dev = air_pick[:250], air_pick[250:]

def rows(cids):
    out = []
    for c in cids:
        for i, d in enumerate(convs[c]):
            r = {"id": f"{c}#{i}"}
            r.update(d)
            out.append(r)
    return out

def batches(name, cids, size=600):
    cur, n, files = [], 0, []
    for c in cids:
        cur.append(c)
        n += len(convs[c])
        if n >= size:
            files.append(cur); cur, n = [], 0
    if cur:
        files.append(cur)
    for i, f in enumerate(files):
        path = f"batches/{name}-{i+1:02}.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            for r in rows(f):
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(path, sum(len(convs[c]) for c in f))

import os
os.makedirs("batches", exist_ok=True)
# Dev batches mix sources so each labeller sees all three.
dev = ibm_dev + abcd_dev + air_dev
rng.shuffle(dev)
batches("dev", dev)
blind = ibm_blind + abcd_blind + air_blind
rng.shuffle(blind)
batches("blind", blind)
