#!/usr/bin/env python3
"""Convert two agencies of `bloomlink synth` output to FEBRL columns, so that
../shared/anchors/bench_splink.py (which expects FEBRL columns) and bloomlink
can be compared on the same plaintext.

Usage: python synth_to_febrl.py SYNTH_DIR OUT_DIR
Reads SYNTH_DIR/social_care.csv, school.csv, truth.csv; writes OUT_DIR/a.csv,
b.csv (rec_id, given_name, surname, street_number, address_1, address_2,
suburb, postcode, state, date_of_birth, soc_sec_id; lower case, dates as
YYYYMMDD, empty where unknown) and truth.csv (rec_id_a,rec_id_b: every
cross-agency pair of records of one person).
"""
import csv, datetime, sys
from collections import defaultdict
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
COLS = ["rec_id", "given_name", "surname", "street_number", "address_1", "address_2",
        "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"]


def convert(name, idc, first, last, dob, fmt, pc, addr, target):
    with open(src / f"{name}.csv", newline="") as f, open(out / target, "w", newline="") as g:
        w = csv.DictWriter(g, COLS)
        w.writeheader()
        for r in csv.DictReader(f):
            d = ""
            if r[dob]:
                d = datetime.datetime.strptime(r[dob], fmt).strftime("%Y%m%d")
            a = r[addr].lower().split(" ", 1)
            num, street = (a[0], a[1]) if len(a) == 2 and a[0].isdigit() else ("", r[addr].lower())
            w.writerow({"rec_id": r[idc], "given_name": r[first].lower(), "surname": r[last].lower(),
                        "street_number": num, "address_1": street, "address_2": "", "suburb": "",
                        "postcode": r[pc].lower().replace(" ", ""), "state": "", "date_of_birth": d,
                        "soc_sec_id": ""})


convert("social_care", "child_id", "forename", "surname", "dob", "%d/%m/%Y", "postcode", "address", "a.csv")
convert("school", "UPN", "LegalForename", "LegalSurname", "DOB", "%Y-%m-%d", "Postcode", "AddressLine1", "b.csv")
ents = defaultdict(lambda: defaultdict(list))
for r in csv.DictReader(open(src / "truth.csv")):
    ents[r["entity"]][r["agency"]].append(r["record_id"])
with open(out / "truth.csv", "w") as f:
    f.write("rec_id_a,rec_id_b\n")
    for e in ents.values():
        for a in e.get("social_care", []):
            for b in e.get("school", []):
                f.write(f"{a},{b}\n")
