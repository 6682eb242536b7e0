"""The built-in sample: multilingual alt-texts, WAT files that carry them, and matching metadata.

Texts are composed from per-language word lists written for this project (40 everyday concepts,
the word for "photo", and per-language phrase templates) in 22 languages and 10 scripts. Concepts
are drawn from a Zipf distribution (a head of frequent concepts, a long tail), languages from a
long-tailed distribution with English first (English must be present: thresholds derive from it).
Every composed text contains at least its first concept as a whole word (or inside a no-space
script), so it matches its language's sample metadata: the concept words, the photo word and the
numbers 0-99, as the paper's metadata includes them.

All randomness comes from `numpy.random.default_rng(seed...)`: same seed, same bytes.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np

from curation.metadata_dir import write_language, write_manifest

CONCEPTS = (
    "dog cat house car tree flower mountain river beach city bridge bird horse book coffee bread bicycle "
    "train church garden child woman man street sky sun moon lake forest boat apple chair table shoe "
    "dress cake fish kitchen window computer"
).split()

# lang -> (script, photo word, 40 concept words in CONCEPTS order separated by "|", templates)
# Templates use {a} {b} {c} (concept words; {a} always stands alone or in a no-space script)
# and {n} (a number 0-99). Nouns stay in their dictionary form so they match the metadata.
LANGUAGES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "en": ("Latin", "photo",
           "dog|cat|house|car|tree|flower|mountain|river|beach|city|bridge|bird|horse|book|coffee|bread|"
           "bicycle|train|church|garden|child|woman|man|street|sky|sun|moon|lake|forest|boat|apple|chair|"
           "table|shoe|dress|cake|fish|kitchen|window|computer",
           ("{a}", "photo of the {a} and the {b}", "{a} next to the {b}", "the {a} in the {b}, {n}",
            "{a}, {b} and {c}", "my {a} and the {b} in summer", "close-up photo of a {a}")),
    "de": ("Latin", "Foto",
           "Hund|Katze|Haus|Auto|Baum|Blume|Berg|Fluss|Strand|Stadt|Brücke|Vogel|Pferd|Buch|Kaffee|Brot|"
           "Fahrrad|Zug|Kirche|Garten|Kind|Frau|Mann|Straße|Himmel|Sonne|Mond|See|Wald|Boot|Apfel|Stuhl|"
           "Tisch|Schuh|Kleid|Kuchen|Fisch|Küche|Fenster|Computer",
           ("{a}", "Foto: {a} und {b}", "{a} mit {b}", "{a}, {b} und {c}", "Bild {n}: {a} im Sommer")),
    "es": ("Latin", "foto",
           "perro|gato|casa|coche|árbol|flor|montaña|río|playa|ciudad|puente|pájaro|caballo|libro|café|pan|"
           "bicicleta|tren|iglesia|jardín|niño|mujer|hombre|calle|cielo|sol|luna|lago|bosque|barco|manzana|"
           "silla|mesa|zapato|vestido|pastel|pez|cocina|ventana|ordenador",
           ("{a}", "foto de {a} y {b}", "{a} con {b}", "{a}, {b} y {c}", "imagen {n}: {a} en verano")),
    "fr": ("Latin", "photo",
           "chien|chat|maison|voiture|arbre|fleur|montagne|rivière|plage|ville|pont|oiseau|cheval|livre|"
           "café|pain|vélo|train|église|jardin|enfant|femme|homme|rue|ciel|soleil|lune|lac|forêt|bateau|"
           "pomme|chaise|table|chaussure|robe|gâteau|poisson|cuisine|fenêtre|ordinateur",
           ("{a}", "photo : {a} et {b}", "{a} avec {b}", "{a}, {b} et {c}", "image {n} : {a} en été")),
    "it": ("Latin", "foto",
           "cane|gatto|casa|auto|albero|fiore|montagna|fiume|spiaggia|città|ponte|uccello|cavallo|libro|"
           "caffè|pane|bicicletta|treno|chiesa|giardino|bambino|donna|uomo|strada|cielo|sole|luna|lago|"
           "bosco|barca|mela|sedia|tavolo|scarpa|vestito|torta|pesce|cucina|finestra|computer",
           ("{a}", "foto di {a} e {b}", "{a} con {b}", "{a}, {b} e {c}", "immagine {n}: {a} in estate")),
    "pt": ("Latin", "foto",
           "cachorro|gato|casa|carro|árvore|flor|montanha|rio|praia|cidade|ponte|pássaro|cavalo|livro|café|"
           "pão|bicicleta|trem|igreja|jardim|criança|mulher|homem|rua|céu|sol|lua|lago|floresta|barco|maçã|"
           "cadeira|mesa|sapato|vestido|bolo|peixe|cozinha|janela|computador",
           ("{a}", "foto de {a} e {b}", "{a} com {b}", "{a}, {b} e {c}", "imagem {n}: {a} no verão")),
    "nl": ("Latin", "foto",
           "hond|kat|huis|auto|boom|bloem|berg|rivier|strand|stad|brug|vogel|paard|boek|koffie|brood|fiets|"
           "trein|kerk|tuin|kind|vrouw|man|straat|lucht|zon|maan|meer|bos|boot|appel|stoel|tafel|schoen|jurk|"
           "taart|vis|keuken|raam|computer",
           ("{a}", "foto van {a} en {b}", "{a} met {b}", "{a}, {b} en {c}", "afbeelding {n}: {a} in de zomer")),
    "pl": ("Latin", "zdjęcie",
           "pies|kot|dom|samochód|drzewo|kwiat|góra|rzeka|plaża|miasto|most|ptak|koń|książka|kawa|chleb|"
           "rower|pociąg|kościół|ogród|dziecko|kobieta|mężczyzna|ulica|niebo|słońce|księżyc|jezioro|las|"
           "łódź|jabłko|krzesło|stół|but|sukienka|ciasto|ryba|kuchnia|okno|komputer",
           ("{a}", "zdjęcie: {a} i {b}", "{a}, {b} i {c}", "obraz {n}: {a} latem")),
    "sv": ("Latin", "foto",
           "hund|katt|hus|bil|träd|blomma|berg|flod|strand|stad|bro|fågel|häst|bok|kaffe|bröd|cykel|tåg|"
           "kyrka|trädgård|barn|kvinna|man|gata|himmel|sol|måne|sjö|skog|båt|äpple|stol|bord|sko|klänning|"
           "tårta|fisk|kök|fönster|dator",
           ("{a}", "foto: {a} och {b}", "{a} med {b}", "{a}, {b} och {c}", "bild {n}: {a} på sommaren")),
    "tr": ("Latin", "fotoğraf",
           "köpek|kedi|ev|araba|ağaç|çiçek|dağ|nehir|plaj|şehir|köprü|kuş|at|kitap|kahve|ekmek|bisiklet|tren|"
           "kilise|bahçe|çocuk|kadın|adam|sokak|gökyüzü|güneş|ay|göl|orman|tekne|elma|sandalye|masa|ayakkabı|"
           "elbise|pasta|balık|mutfak|pencere|bilgisayar",
           ("{a}", "fotoğraf: {a} ve {b}", "{a}, {b} ve {c}", "resim {n}: yazın {a}")),
    "vi": ("Latin", "ảnh",
           "chó|mèo|nhà|xe hơi|cây|hoa|núi|sông|bãi biển|thành phố|cầu|chim|ngựa|sách|cà phê|bánh mì|xe đạp|"
           "tàu hỏa|nhà thờ|vườn|trẻ em|phụ nữ|đàn ông|đường phố|bầu trời|mặt trời|mặt trăng|hồ|rừng|thuyền|"
           "táo|ghế|bàn|giày|váy|bánh ngọt|cá|nhà bếp|cửa sổ|máy tính",
           ("{a}", "ảnh {a} và {b}", "{a} với {b}", "{a}, {b} và {c}", "hình {n}: {a} vào mùa hè")),
    "id": ("Latin", "foto",
           "anjing|kucing|rumah|mobil|pohon|bunga|gunung|sungai|pantai|kota|jembatan|burung|kuda|buku|kopi|"
           "roti|sepeda|kereta|gereja|taman|anak|wanita|pria|jalan|langit|matahari|bulan|danau|hutan|perahu|"
           "apel|kursi|meja|sepatu|gaun|kue|ikan|dapur|jendela|komputer",
           ("{a}", "foto {a} dan {b}", "{a} dengan {b}", "{a}, {b} dan {c}", "gambar {n}: {a} di musim panas")),
    "ru": ("Cyrillic", "фото",
           "собака|кошка|дом|машина|дерево|цветок|гора|река|пляж|город|мост|птица|лошадь|книга|кофе|хлеб|"
           "велосипед|поезд|церковь|сад|ребёнок|женщина|мужчина|улица|небо|солнце|луна|озеро|лес|лодка|"
           "яблоко|стул|стол|туфля|платье|торт|рыба|кухня|окно|компьютер",
           ("{a}", "фото: {a} и {b}", "{a}, {b} и {c}", "картинка {n}: {a} летом")),
    "uk": ("Cyrillic", "фото",
           "собака|кіт|будинок|автомобіль|дерево|квітка|гора|річка|пляж|місто|міст|птах|кінь|книга|кава|хліб|"
           "велосипед|поїзд|церква|сад|дитина|жінка|чоловік|вулиця|небо|сонце|місяць|озеро|ліс|човен|яблуко|"
           "стілець|стіл|черевик|сукня|торт|риба|кухня|вікно|комп'ютер",
           ("{a}", "фото: {a} і {b}", "{a}, {b} і {c}", "зображення {n}: {a} влітку")),
    "el": ("Greek", "φωτογραφία",
           "σκύλος|γάτα|σπίτι|αυτοκίνητο|δέντρο|λουλούδι|βουνό|ποτάμι|παραλία|πόλη|γέφυρα|πουλί|άλογο|"
           "βιβλίο|καφές|ψωμί|ποδήλατο|τρένο|εκκλησία|κήπος|παιδί|γυναίκα|άντρας|δρόμος|ουρανός|ήλιος|"
           "φεγγάρι|λίμνη|δάσος|βάρκα|μήλο|καρέκλα|τραπέζι|παπούτσι|φόρεμα|κέικ|ψάρι|κουζίνα|παράθυρο|"
           "υπολογιστής",
           ("{a}", "φωτογραφία: {a} και {b}", "{a}, {b} και {c}", "εικόνα {n}: {a} το καλοκαίρι")),
    "zh": ("Han", "照片",
           "狗|猫|房子|汽车|树|花|山|河|海滩|城市|桥|鸟|马|书|咖啡|面包|自行车|火车|教堂|花园|孩子|女人|男人|"
           "街道|天空|太阳|月亮|湖|森林|船|苹果|椅子|桌子|鞋|连衣裙|蛋糕|鱼|厨房|窗户|电脑",
           ("{a}", "{a}和{b}的照片", "{a}、{b}和{c}", "图片 {n}：夏天的{a}", "美丽的{a}")),
    "ja": ("Japanese", "写真",
           "犬|猫|家|車|木|花|山|川|海辺|街|橋|鳥|馬|本|コーヒー|パン|自転車|電車|教会|庭|子供|女性|男性|通り|"
           "空|太陽|月|湖|森|船|りんご|椅子|テーブル|靴|ドレス|ケーキ|魚|台所|窓|パソコン",
           ("{a}", "{a}と{b}の写真", "{a}、{b}、{c}", "画像 {n}：夏の{a}", "きれいな{a}")),
    "ko": ("Hangul", "사진",
           "개|고양이|집|자동차|나무|꽃|산|강|해변|도시|다리|새|말|책|커피|빵|자전거|기차|교회|정원|아이|"
           "여자|남자|거리|하늘|태양|달|호수|숲|배|사과|의자|탁자|신발|드레스|케이크|물고기|부엌|창문|컴퓨터",
           ("{a}", "{a} 그리고 {b} 사진", "{a}, {b}, {c}", "이미지 {n}: 여름의 {a}")),
    "th": ("Thai", "ภาพ",
           "สุนัข|แมว|บ้าน|รถยนต์|ต้นไม้|ดอกไม้|ภูเขา|แม่น้ำ|ชายหาด|เมือง|สะพาน|นก|ม้า|หนังสือ|กาแฟ|ขนมปัง|"
           "จักรยาน|รถไฟ|โบสถ์|สวน|เด็ก|ผู้หญิง|ผู้ชาย|ถนน|ท้องฟ้า|ดวงอาทิตย์|ดวงจันทร์|ทะเลสาบ|ป่า|เรือ|"
           "แอปเปิ้ล|เก้าอี้|โต๊ะ|รองเท้า|ชุดเดรส|เค้ก|ปลา|ห้องครัว|หน้าต่าง|คอมพิวเตอร์",
           ("{a}", "ภาพ{a}และ{b}", "{a} {b} และ{c}", "รูปที่ {n}: {a}ในฤดูร้อน")),
    "ar": ("Arabic", "صورة",
           "كلب|قطة|منزل|سيارة|شجرة|زهرة|جبل|نهر|شاطئ|مدينة|جسر|طائر|حصان|كتاب|قهوة|خبز|دراجة|قطار|كنيسة|"
           "حديقة|طفل|امرأة|رجل|شارع|سماء|شمس|قمر|بحيرة|غابة|قارب|تفاحة|كرسي|طاولة|حذاء|فستان|كعكة|سمكة|"
           "مطبخ|نافذة|حاسوب",
           ("{a}", "صورة {a} مع {b}", "{a} - {b} - {c}", "صورة رقم {n}: {a} في الصيف")),
    "hi": ("Devanagari", "तस्वीर",
           "कुत्ता|बिल्ली|घर|कार|पेड़|फूल|पहाड़|नदी|समुद्र तट|शहर|पुल|पक्षी|घोड़ा|किताब|कॉफ़ी|रोटी|साइकिल|"
           "ट्रेन|चर्च|बगीचा|बच्चा|महिला|आदमी|सड़क|आसमान|सूरज|चाँद|झील|जंगल|नाव|सेब|कुर्सी|मेज़|जूता|"
           "पोशाक|केक|मछली|रसोई|खिड़की|कंप्यूटर",
           ("{a}", "{a} और {b} की तस्वीर", "{a}, {b} और {c}", "चित्र {n}: गर्मियों में {a}")),
    "he": ("Hebrew", "תמונה",
           "כלב|חתול|בית|מכונית|עץ|פרח|הר|נהר|חוף|עיר|גשר|ציפור|סוס|ספר|קפה|לחם|אופניים|רכבת|כנסייה|גן|"
           "ילד|אישה|גבר|רחוב|שמיים|שמש|ירח|אגם|יער|סירה|תפוח|כיסא|שולחן|נעל|שמלה|עוגה|דג|מטבח|חלון|מחשב",
           ("{a}", "תמונה של {a} עם {b}", "{a}, {b}, {c}", "תמונה {n}: {a} בקיץ")),
}
LANGUAGE_CODES = tuple(LANGUAGES)  # English first: the long-tailed language order
NUMBERS = tuple(str(i) for i in range(100))
ZIPF_CONCEPTS = 1.1  # exponent of the concept distribution
ZIPF_LANGUAGES = 0.9  # exponent of the language distribution
# English threshold that makes balancing visible on the small sample (its head English entries
# occur a few hundred times; the paper's 170,000 would keep everything).
SAMPLE_T_EN = 40
TLDS = {"en": "com", "ja": "jp", "zh": "cn", "ko": "kr", "el": "gr", "uk": "ua", "sv": "se", "vi": "vn",
        "hi": "in", "he": "il", "ar": "eg", "pt": "br"}


def concept_words(lang: str) -> list[str]:
    words = LANGUAGES[lang][2].split("|")
    assert len(words) == len(CONCEPTS), f"{lang}: {len(words)} concept words"
    return words


def metadata_entries(lang: str) -> tuple[list[str], list[str]]:
    """(entries, sources) of a language's sample metadata: concepts, the photo word, numbers 0-99."""
    words = concept_words(lang)
    entries = [*words, LANGUAGES[lang][1], *NUMBERS]
    sources = ["concept"] * len(words) + ["concept"] + ["number"] * len(NUMBERS)
    return entries, sources


def write_sample_metadata(root: str | os.PathLike, languages=None, version: str = "sample-v1") -> dict:
    """Write the sample metadata directory (entries + automata per language, then the manifest)."""
    languages = list(languages or LANGUAGE_CODES)
    _check_languages(languages)
    infos = {}
    for lang in languages:
        entries, sources = metadata_entries(lang)
        infos[lang] = write_language(root, lang, entries, sources)
    return write_manifest(
        root,
        version,
        infos,
        # the module's old name stays in the manifest: the sample metadata must not change
        {"generator": "curation.sample_data", "sources": ["concept", "number"], "concepts": len(CONCEPTS)},
    )


def _check_languages(languages) -> None:
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"no sample words for {unknown}; known: {', '.join(LANGUAGE_CODES)}")
    if not languages:
        raise ValueError("no languages")


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / w.sum()


def _language_weights(languages) -> np.ndarray:
    return zipf_weights(len(languages), ZIPF_LANGUAGES)


def _draw_concepts(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) distinct concept indices per row, Zipf-distributed."""
    k = len(CONCEPTS)
    c = rng.choice(k, size=(n, 3), p=zipf_weights(k, ZIPF_CONCEPTS))
    b_eq = c[:, 1] == c[:, 0]
    c[b_eq, 1] = (c[b_eq, 1] + 1 + rng.integers(0, k - 1, int(b_eq.sum()))) % k
    clash = (c[:, 2] == c[:, 0]) | (c[:, 2] == c[:, 1])
    while clash.any():
        c[clash, 2] = (c[clash, 2] + 1) % k
        clash = (c[:, 2] == c[:, 0]) | (c[:, 2] == c[:, 1])
    return c


class _Composer:
    """Per-language word and template tables, so composing a text is one str.format call."""

    def __init__(self, languages):
        self.languages = list(languages)
        self.words = [concept_words(lang) for lang in self.languages]
        self.templates = [LANGUAGES[lang][3] for lang in self.languages]

    def compose(self, li: int, template: int, a: int, b: int, c: int, n: int) -> str:
        words = self.words[li]
        return self.templates[li][template].format(a=words[a], b=words[b], c=words[c], n=n)

    def template_index(self, li: int, u: float) -> int:
        """Single-word alt-text (template 0) for 15% of texts, the phrase templates evenly otherwise."""
        k = len(self.templates[li])
        return 0 if u < 0.15 else 1 + min(int((u - 0.15) / 0.85 * (k - 1)), k - 2)


def generate_alt_texts_with_concepts(n: int, seed: int, languages=None) -> list[tuple[str, str, str, int]]:
    """Like `generate_alt_texts`, with the index of each text's first concept (always present)."""
    languages = list(languages or LANGUAGE_CODES)
    _check_languages(languages)
    rng = np.random.default_rng([seed, 0x5A11])
    composer = _Composer(languages)
    lang_idx = rng.choice(len(languages), size=n, p=_language_weights(languages))
    concepts = _draw_concepts(rng, n)
    tmpl_u = rng.random(n)
    nums = rng.integers(0, 100, n)
    # ~30% of images carry more than one text, in the same or other languages
    images = rng.integers(0, max(1, int(n * 0.7)), n)
    # template_index, vectorised
    k = np.array([len(t) for t in composer.templates])[lang_idx]
    tmpl = np.where(tmpl_u < 0.15, 0, 1 + np.minimum(((tmpl_u - 0.15) / 0.85 * (k - 1)).astype(np.int64), k - 2))
    words, templates, codes = composer.words, composer.templates, composer.languages
    texts = [
        templates[li][ti].format(a=words[li][a], b=words[li][b], c=words[li][c], n=num)
        for li, ti, (a, b, c), num in zip(lang_idx.tolist(), tmpl.tolist(), concepts.tolist(), nums.tolist(), strict=True)
    ]
    urls = [f"https://cdn{img & 15}.photos.example/img/{img:08x}.jpg" for img in images.tolist()]
    return list(zip(urls, texts, [codes[li] for li in lang_idx.tolist()], concepts[:, 0].tolist(), strict=True))


def generate_alt_texts(n: int, seed: int, languages=None) -> list[tuple[str, str, str]]:
    """n (image url, alt-text, language) triples in 22 languages (or `languages`), deterministic by seed.

    Languages are long-tailed with English first, concepts Zipf-distributed, and about 30% of
    image URLs carry several texts. Every text matches its language's `write_sample_metadata`.
    """
    return [(url, text, lang) for url, text, lang, _ in generate_alt_texts_with_concepts(n, seed, languages)]


# --------------------------------------------------------------------------- WAT sample

JUNK_ALTS = ("DSC_0042.JPG", "logo", "banner", "icon", "spacer", "IMG_20190312_104512", "thumbnail")
PIXEL_GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def _site(lang: str, k: int) -> str:
    return f"www.{lang}-site{k:02d}.{TLDS.get(lang, lang)}"


def _link_url(rng: np.random.Generator, site: str, path: str, page_dir: str) -> str:
    """One spelling of https://site/path: absolute, root-relative, relative, protocol-relative, odd case."""
    u = rng.random()
    if u < 0.45:
        return f"https://{site}{path}"
    if u < 0.70:
        return path
    if u < 0.80:
        depth = page_dir.strip("/").count("/") + 1 if page_dir.strip("/") else 0
        return "../" * depth + path.lstrip("/")
    if u < 0.92:
        return f"//{site}{path}"
    return f"HTTPS://{site.upper()}:443{path}#main"


def sample_pages(seed: int, file_index: int, pages: int, languages=None) -> list[dict]:
    """`curation.samples.wat_writer.write_wat` pages of one sample file: HTML pages with image links and some junk."""
    languages = list(languages or LANGUAGE_CODES)
    _check_languages(languages)
    rng = np.random.default_rng([seed, 0xA7, file_index])
    composer = _Composer(languages)
    lang_p = _language_weights(languages)
    # images shared by many pages of all languages (stock photos, logos of a network)
    shared_rng = np.random.default_rng([seed, 0x5EED])
    shared = []
    for k in range(40):
        li = int(shared_rng.choice(len(languages), p=lang_p))
        a, b, c = (int(x) for x in _draw_concepts(shared_rng, 1)[0])
        text = composer.compose(li, composer.template_index(li, float(shared_rng.random())), a, b, c, k)
        shared.append((f"https://static.photostock.example/shared/{k:04d}.jpg", text))

    def text_for(li: int) -> str:
        a, b, c = (int(x) for x in _draw_concepts(rng, 1)[0])
        return composer.compose(li, composer.template_index(li, float(rng.random())), a, b, c, int(rng.integers(0, 100)))

    out: list[dict] = []
    for p in range(pages):
        li = int(rng.choice(len(languages), p=lang_p))
        lang = languages[li]
        site = _site(lang, int(rng.integers(0, 6)))
        page_dir = f"/{lang}/articles/{int(rng.integers(2015, 2025))}/"
        page_url = f"https://{site}{page_dir}page-{file_index:02d}-{p:04d}.html"
        out.append({"page_url": page_url, "type": "request"})
        kind = rng.random()
        if kind < 0.03:
            out.append({"page_url": page_url.replace(".html", ".jpg"), "type": "non_html"})
            continue
        links: list[dict] = [{"path": "A@/href", "url": f"/{lang}/index.html", "text": "home"}]
        if kind < 0.08:  # an HTML page without images
            out.append({"page_url": page_url, "title": text_for(li), "links": links})
            continue
        for _ in range(int(rng.integers(2, 15))):
            u = float(rng.random())
            path = f"/images/{int(rng.integers(0, 400)):04d}/{int(rng.integers(0, 1 << 30)):08x}.jpg"
            if u < 0.10:  # a shared image: the same or a new text
                url, text = shared[int(rng.integers(0, len(shared)))]
                link = {"url": url, "alt": text if rng.random() < 0.5 else text_for(li)}
            elif u < 0.12:
                link = {"url": PIXEL_GIF, "alt": text_for(li) if rng.random() < 0.5 else ""}
            elif u < 0.135:
                link = {"url": "javascript:void(0)", "alt": text_for(li)}
            elif u < 0.14:
                link = {"url": f"mailto:info@{site}", "alt": "e-mail"}
            elif u < 0.17:
                link = {"url": _link_url(rng, site, path, page_dir), "alt": ""}
            elif u < 0.20:
                link = {"url": _link_url(rng, site, "/img/spacer.gif", page_dir)}
            elif u < 0.21:
                link = {"url": _link_url(rng, site, path, page_dir), "alt": "   \t "}
            elif u < 0.23:
                link = {"url": _link_url(rng, site, path, page_dir), "alt": JUNK_ALTS[int(rng.integers(0, len(JUNK_ALTS)))]}
            elif u < 0.24:
                link = {"url": _link_url(rng, site, path, page_dir), "title": text_for(li)}
            elif u < 0.245:
                link = {"url": _link_url(rng, site, path, page_dir), "data-image-title": text_for(li)}
            else:
                link = {"url": _link_url(rng, site, path, page_dir), "alt": text_for(li)}
                if rng.random() < 0.08:
                    link["title"] = link["alt"] if rng.random() < 0.5 else text_for(li)
                if rng.random() < 0.05:
                    link["path"] = "IMG@/data-src"
            links.append({"path": "IMG@/src", **link} if "path" not in link else link)
        if p % 97 == 13:  # a runaway alt attribute (page text pasted into alt)
            links.append({"path": "IMG@/src", "url": f"https://{site}/images/long.jpg", "alt": text_for(li) * 400})
        out.append({"page_url": page_url, "title": text_for(li), "links": links})
    return out


def write_sample(out_dir: str | os.PathLike, seed: int = 0, files: int = 4, pages_per_file: int = 150, languages=None) -> dict:
    """Write OUT/wat/sample-NN.wat.gz and OUT/metadata/; same arguments give identical bytes.

    Stale sample-*.wat.gz files from a run with more files are removed, so a glob over
    OUT/wat sees exactly this sample. Returns a summary (files, records, links, languages).
    """
    from curation.samples.wat_writer import write_wat

    languages = list(languages or LANGUAGE_CODES)
    _check_languages(languages)
    if "en" not in languages:
        raise ValueError("the sample needs English: thresholds derive from English counts")
    out_dir = os.fspath(out_dir)
    wat_dir = os.path.join(out_dir, "wat")
    os.makedirs(wat_dir, exist_ok=True)
    names = [f"sample-{i:02d}.wat.gz" for i in range(files)]
    for stale in sorted(os.listdir(wat_dir)):
        if stale.startswith("sample-") and stale.endswith(".wat.gz") and stale not in names:
            os.remove(os.path.join(wat_dir, stale))
    records = 0
    image_links = 0
    lang_pages: Counter[str] = Counter()
    for i, name in enumerate(names):
        pages = sample_pages(seed, i, pages_per_file, languages)
        records += write_wat(os.path.join(wat_dir, name), pages)
        for page in pages:
            n_img = sum(1 for ln in page.get("links", []) if ln.get("path", "").startswith("IMG@"))
            image_links += n_img
            if n_img:
                lang_pages[page["page_url"].split("/")[3]] += 1
    manifest = write_sample_metadata(os.path.join(out_dir, "metadata"), languages)
    summary = {
        "out": out_dir,
        "seed": seed,
        "wat_files": [os.path.join(wat_dir, n) for n in names],
        "records": records,
        "image_links": image_links,
        "pages_with_images_by_language": dict(sorted(lang_pages.items())),
        "metadata": os.path.join(out_dir, "metadata"),
        "metadata_version": manifest["version"],
        "metadata_languages": len(manifest["languages"]),
        "suggested_t_en": SAMPLE_T_EN,
    }
    with open(os.path.join(out_dir, "sample.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    return summary
