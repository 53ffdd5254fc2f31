#!/usr/bin/env python3
"""Generates the sorted word-list constants embedded in src/detect.rs.

Run tools/splice.sh (python3 tools/gen_lists.py > /tmp/lists.rs, then splice between the
`// BEGIN GENERATED LISTS` / `// END GENERATED LISTS` markers and cargo fmt).
The lists are general knowledge (common US given names, US states, English
stop words, clinical vocabulary); sorted lowercase so the Rust side can
binary-search them without any runtime setup.
"""

FIRST = """
aaron abigail adam adrian ahmed aisha alan albert alejandro alex alexander alexis alice alicia
ali allison alyssa amanda amber amelia amy ana andrea andrew angela angel anita ann anna anne
annie anthony antonio april aria arthur ashley aubrey audrey austin ava barbara benjamin betty
beverly billy bobby bonnie bradley brandon brenda brian brittany brooke bruce bryan caleb cameron
carl carlos carmen carol carolyn carrie catherine charles charlotte chen cheryl chloe chris
christian christina christine christopher cindy claire clara cody colleen connie craig crystal
curtis cynthia daisy dale dana daniel danielle darius darnell darren david dawn dean deborah debra
denise dennis derek diana diane dmitri dolores dominic donald donna doris dorothy douglas dylan
earl eddie edgar edith edna edward eileen elaine eleanor elena elijah elizabeth ella ellen emily
emma eric erica erik erin esther ethan eugene eva evan evelyn faith fatima felicia fernando frances
francisco frank fred frederick gabriel gail gary gene george gerald gina glenn gloria gordon grace
grant greg gregory guadalupe hailey hannah harold harper harry hassan heather hector helen henry
hiroshi holly howard hunter ian irene isaac isabel isabella ivan jack jackie jacob jacqueline jaime
jake james jamal jamie jane janet janice jared jasmine jason javier jean jeffrey jennifer jeremy
jerry jesse jessica jesus jill jimmy joan joanne joe joel john johnny jonathan jordan jorge jose
joseph joshua joy joyce juan juanita judith judy julia julian julie june justin kaitlyn karen
karl katherine kathleen kathryn kathy katie kayla keith kelly kenji kenneth kevin kimberly kristen
kyle lamar larry latoya laura lauren lawrence leah lee leonard leslie li liam lillian lily linda
lisa logan lori louis louise lucas lucia luis luke lydia lynn madison malik manuel marcus margaret
maria marie marilyn mario marisol marjorie mark martha martin marvin mary mason matthew maureen
maurice megan mei melanie melissa melvin mia michael michelle miguel mildred mohammed monica
muhammad nancy naomi natalie nathan nicholas nicole noah nora norma olga olivia omar oscar pamela
patricia patrick paul paula pedro peggy peter philip phyllis priya rachel rafael rahul raj ralph
ramon randy raymond rebecca regina renee rhonda ricardo richard ricky riley rita robert roberto
robin rodney roger ronald rosa rose ruby russell ruth ryan sabrina samantha samuel sandra sara
sarah scott sean sergei shannon sharon shawn sheila shirley sofia sonia sophia stacy stanley
stephanie stephen steven susan suzanne sylvia tamara tammy tanya tara teresa terry theresa thomas
tiffany timothy tina todd tony tracy travis tyler valerie vanessa vernon veronica vicki victor
victoria vincent virginia walter wanda wayne wei wendy william willie xavier yolanda yuki yvonne
zachary zoe
"""

AMBIGUOUS = """
amber angel april art autumn bill chance chase crystal dawn destiny drew faith frank gene grace
grant guy hope iris ivy jade joy june lee mark may pat pearl ray rose ruby rusty sandy sky summer
violet will
"""

STOP = """
a about above abnormal acute addendum admission admitted advil aetna after again age agreed all
allergies allergy also am an anatomy and anesthesia anesthesiology anthem any april are as
assessment associates at august avenue back be because been before being below best between
bilateral black blood blue both brand but by call called can cancer cardiology care center centre
chief chronic cigna city class clinic clinical college colleague community complaint consult
consultation continue continued copd could counseling county critical cross daily date day dear
december denies department dermatology diabetes diagnosis did disease disorder do doctor does dob
dr due during dx each education emergency endocrinology english evening exam examination family
february fellow female fever few floor follow followup for friday from further gastroenterology
general given grade group gynecology had has have having he health healthcare heart hematology her
here hers him his history home hospital how humana hx hypertension i icu if ii iii imaging
impression in infection instructions insulin insurance intensive internal into is it its iv
january jr july june just kaiser kidney lab laboratory labs left letter level liver lower lung
madam male man march may md me medicaid medical medicare medication medications medicine meds
memorial message mild moderate monday month more morning most mr mrs ms my negative nephrology
neurology new night no none nor normal not note notes november now np nurse nursing obstetrics
october of off office old on once oncology only ophthalmology or orthopaedics orthopedics other
otolaryngology our out over own pa pain pathology patient pediatrics per pharmacy phd physical
physician plan please portal positive post practice pressure primary prior progress provider
psychiatry psychology pt pulmonology radiology re referral regards regional report reports resident
result results review reviewed rheumatology right rn road room same saturday school september
service services severe shield should since sincerely sir she so social some spanish sr stable
staff stage start started state status stop stopped street such sugar sunday surgery surgical
summary syndrome systems take team than thank thanks that the their them then there these they
this those thursday through to today tomorrow too tuesday tumor type under united university
unit unknown unremarkable until up upper urgent urology very via vitals was ward we wednesday week
were what when where which while white who whom why will with work would year yes yesterday you
your fax phone tel telephone email cell mobile pager pages cover attn npi dea mrn ssn acct
"""

EPONYM_FOLLOWERS = """
body bodies catheter cell cells chorea classification criteria disease diseases disorder equation
formula fracture grade hernia law lymphoma maneuver murmur node nodes operation palsy phenomenon
procedure reflex rule scale score sign staging syndrome test triad tumor type ulcer
"""

UNITS = """
bpm c cal cc cells cm copies day days dl f g gm hours hrs iu kcal kg l lb lbs mcg meq mg min
minutes ml mm mmhg mmol mol months ng nmol pg pmol sec steps u ug umol unit units weeks x years
"""

COUNTRIES = """
afghanistan america australia bangladesh brazil canada china colombia cuba egypt england
ethiopia europe france germany guatemala haiti honduras india iran iraq ireland israel italy
jamaica japan kenya korea mexico nigeria pakistan peru philippines poland russia somalia spain
syria uk ukraine us usa venezuela vietnam
"""

FILLERS = """
# ( ) - . : = card code id identification is no nbr num number numbers of was
"""

STATE_CODES = """
ak al ar az ca co ct dc de fl ga hi ia id il in ks ky la ma md me mi mn mo ms mt nc nd ne nh nj nm
nv ny oh ok or pa pr ri sc sd tn tx ut va vt wa wi wv wy
"""

STATE_NAMES = [
    "alabama", "alaska", "arizona", "arkansas", "california", "colorado", "connecticut",
    "delaware", "district of columbia", "florida", "georgia", "hawaii", "idaho", "illinois",
    "indiana", "iowa", "kansas", "kentucky", "louisiana", "maine", "maryland", "massachusetts",
    "michigan", "minnesota", "mississippi", "missouri", "montana", "nebraska", "nevada",
    "new hampshire", "new jersey", "new mexico", "new york", "north carolina", "north dakota",
    "ohio", "oklahoma", "oregon", "pennsylvania", "puerto rico", "rhode island",
    "south carolina", "south dakota", "tennessee", "texas", "utah", "vermont", "virginia",
    "washington", "west virginia", "wisconsin", "wyoming",
]

STREET_SUFFIX = """
alley ave avenue blvd boulevard cir circle court ct dr drive hwy highway lane ln parkway pkwy pl
place plaza rd road row sq square st street ter terrace trail trl way
"""

# (phrase, rust action). Phrase words are matched token by token, case-insensitively.
ID = lambda k, v="Generic": f"Act::Id(K::{k}, Val::{v})"
PHRASES = []
def add(words, act):
    for w in words.split(","):
        w = w.strip()
        if w:
            PHRASES.append((w, act))

add("mrn, mr #, mr no, medical record, record number, record no, record #, chart number, chart #, chart no, hospital number, patient id, pt id, patient number", ID("MedicalRecordNumber"))
add("member, policy, health plan, insurance, subscriber, group number, group #, group no, medicare, medicaid, beneficiary, mbi, hicn, plan id", ID("HealthPlanNumber"))
add("account, acct, billing account, invoice, claim", ID("AccountNumber"))
add("license, licence, lic, dea, npi, certificate, certification", ID("LicenseNumber"))
add("vin, vehicle, vehicle identification", ID("VehicleIdentifier"))
add("license plate, licence plate, plate", ID("VehicleIdentifier", "Plate"))
add("serial, s / n, sn, device, device identifier, udi, implant, lot, imei", ID("DeviceIdentifier"))
add("id, identifier, case number, case #, case id, study id, subject id, participant id, employee id, employee number, badge, passport, reference number, ref #, confirmation number, confirmation #", ID("OtherUniqueId"))
add("ssn, social security, ss #", ID("Ssn", "Ssn"))
add("phone, telephone, tel, cell, mobile, pager, contact number, call, ph, home phone, work phone", ID("Phone", "Phone"))
add("fax, facsimile", ID("Fax", "Phone"))
add("zip, zip code, zipcode, postal code", ID("Geographic", "Zip"))
add("name :, name is, named, seen by, referred by, signed by, dictated by, reviewed by, transcribed by, attending :, attending physician, pcp :, pcp is, primary care physician, dear, contact :, emergency contact, cc :, provider :, surgeon :, accompanied by, interpreter", "Act::NameStrong")
add("patient, pt", "Act::NameWeak")
add("son, daughter, wife, husband, mother, father, brother, sister, spouse, partner, caregiver, grandson, granddaughter, grandmother, grandfather, niece, nephew, aunt, uncle, friend, guardian, boyfriend, girlfriend, mom, dad, neighbor, roommate", "Act::NameStrong")
add("mr, mrs, ms, miss, mx, dr, prof, doctor", "Act::Honorific")
add("lives in, living in, resides in, residing in, resident of, moved to, moved from, relocated to, relocated from, born in, hometown, home town, lives at", "Act::Geo")
add("po box, p . o . box, p . o box, post office box", "Act::GeoBox")
add("age, aged, age of", "Act::Age")
add("fingerprint, fingerprints, finger print, finger prints, retinal scan, retinal scans, retina scan, iris scan, iris scans, voice print, voice prints, voiceprint, voiceprints, palm print, palmprint, hand geometry, facial geometry, facial recognition, biometric identifier, biometric identifiers", "Act::Phrase(K::Biometric)")
add("full - face photo, full - face photos, full - face photograph, full - face photographs, full face photo, full face photograph, full - face image, full - face images, facial photo, facial photos, facial photograph, facial photographs, photograph of the patient, photo of the patient, photographs of the patient, patient photo, patient photograph, headshot, face photo", "Act::Phrase(K::Photo)")

def words(s):
    out = sorted(set(s.split()))
    return out

def mask_of(items):
    """Bit `len` of entry `first letter` is set when some word has that shape."""
    m = [0] * 27
    for it in items:
        c = it[0]
        idx = ord(c) - ord("a") if "a" <= c <= "z" else 26
        m[idx] |= 1 << min(len(it.encode("utf-8")), 31)
    return m


def emit_mask(m):
    print("    mask: [")
    line = "       "
    for v in m:
        piece = f" 0x{v:08x},"
        if len(line) + len(piece) > 96:
            print(line)
            line = "       "
        line += piece
    print(line)
    print("    ],")


def emit_list(name, items, doc):
    print(f"/// {doc}")
    print(f"const {name}: WordList = WordList {{")
    print("    words: &[")
    line = "       "
    for it in items:
        piece = ' "' + it + '",'
        if len(line) + len(piece) > 96:
            print(line)
            line = "       "
        line += piece
    print(line)
    print("    ],")
    emit_mask(mask_of(items))
    print("};")
    print()


emit_list("FIRST_NAMES", words(FIRST), "Common US given names (lowercase, sorted).")
emit_list("AMBIGUOUS_FIRST", words(AMBIGUOUS), "Given names that are also ordinary words: need a surname.")
emit_list("NON_NAME", words(STOP), "Capitalised words that never start or continue a name.")
emit_list("EPONYM_FOLLOWERS", words(EPONYM_FOLLOWERS), "Words after an eponym that mark it as a disease/sign, not a person.")
emit_list("UNITS", words(UNITS), "Unit words: a number followed by one is a measurement.")
emit_list("COUNTRIES", words(COUNTRIES), "Country names (not PHI: larger than a state).")
emit_list("FILLERS", words(FILLERS), "Tokens allowed between an identifier cue and its value.")
emit_list("STATE_CODES", words(STATE_CODES), "US state / territory postal codes.")
emit_list("STATE_NAMES", sorted(STATE_NAMES), "US state names.")
emit_list("STREET_SUFFIX", words(STREET_SUFFIX), "Street suffixes.")

# phrases sorted by (first word, phrase)
seen = set()
rows = []
for p, a in PHRASES:
    if p in seen:
        raise SystemExit("duplicate phrase " + p)
    seen.add(p)
    rows.append((p.split(" ")[0], p, a))
rows.sort()
print("/// Shape filter over the first words of PHRASES (see WordList::mask).")
m = mask_of([r[0] for r in rows])
print("const PHRASE_MASK: [u32; 27] = [")
print("   " + "".join(f" 0x{v:08x}," for v in m[:9]))
print("   " + "".join(f" 0x{v:08x}," for v in m[9:18]))
print("   " + "".join(f" 0x{v:08x}," for v in m[18:]))
print("];")
print()
print("/// Cue phrases (first word, whole phrase, action), sorted by first word.")
print("const PHRASES: &[(&str, &str, Act)] = &[")
for f, p, a in rows:
    print(f'    ("{f}", "{p}", {a}),')
print("];")
