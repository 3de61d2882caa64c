"""Numbers published in the course's source articles, to set beside ours.

Yang S, Berdine G. Interpretable artificial intelligence (AI) - saliency maps. Southwest
Respiratory and Critical Care Chronicles 2023;11(48):31-37 (CC BY-SA 4.0).
Zhang J et al. Revisiting the trustworthiness of saliency methods in radiology AI.
Radiol Artif Intell 2024;6(1):e220221 (numbers as reported by Yanagawa & Sato 2024).
"""
from __future__ import annotations

#: Yang & Berdine 2023, Table 1: VGG16 top-5 (class as printed, probability in %).
TABLE1_TOP5: dict[str, list[tuple[str, float]]] = {
    "drone": [("Warplane", 52.3), ("Wing", 12.0), ("Airship", 6.7), ("Projectile", 3.8),
              ("Airliner", 3.5)],
    "dog": [("Papillion", 93.2), ("Japanese spaniel", 2.7), ("Chihuahua", 0.9),
            ("Wire-haired fox terrier", 0.4), ("Toy terrier", 0.4)],
    "ai_dog": [("Golden retriever", 81.0), ("Labrador retriever", 8.1), ("Kuvasz", 2.6),
               ("Dingo", 2.5), (None, None)],
    "dome": [("Dome", 97.3), ("Palace", 1.1), ("Stupa", 0.4), ("Fountain", 0.3), (None, None)],
}
#: Table 1 lists only four rows for the AI-generated dog and the dome (the fifth is missing).

#: Yang & Berdine 2023, section 3.2: test set of the COVID-19 CNN.
CXR_TEST = {"covid": 367, "normal": 1014, "true_positives": 321, "false_positives": 23,
            "true_negatives": 991, "accuracy": 0.95}

#: Zhang et al. 2024 via Yanagawa & Sato 2024: maximum PSC with 95% CI, and the reader study.
PSC = {"sensitivity": (0.25, 0.12, 0.38), "robustness": (0.12, 0.0, 0.25)}
READER_STUDY_MAX_CORRECT = 0.448
