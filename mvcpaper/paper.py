"""The paper's published numbers, printed beside every reproduced one (DESIGN.md)."""
from __future__ import annotations

#: Table 1: data sets (images, classes, image size H x W)
TABLE1 = {
    "coil100": {"n_images": 7200, "n_classes": 100, "size": "128x128"},
    "umist": {"n_images": 575, "n_classes": 20, "size": "112x92"},
    "voc2007": {"n_images": 2841, "n_classes": 20, "size": "variable"},
}

_T2_ROWS = ["vgg16", "vgg19", "inception_v3", "xception", "resnet50", "CC", "MVEC", "DMVC-fix", "DMVC"]
_T2 = {  # (JULE, IDEC) per data set, in the order VOC2007, COIL100, UMist
    "vgg16": [(.687, .666), (.989, .963), (.920, .771)],
    "vgg19": [(.684, .677), (.994, .963), (.933, .742)],
    "inception_v3": [(.768, .760), (.984, .957), (.823, .705)],
    "xception": [(.759, .779), (.986, .955), (.829, .707)],
    "resnet50": [(.679, .691), (.997, .973), (.919, .784)],
    "CC": [(.718, .587), (.995, .886), (.855, .699)],
    "MVEC": [(.785, .782), (.996, .977), (.963, .797)],
    "DMVC-fix": [(.792, .730), (.996, .973), (.963, .737)],
    "DMVC": [(.810, None), (.995, None), (.971, None)],
}
#: Table 2: NMI, TABLE2[row][dataset][framework] with framework "JULE" or "IDEC" (None: not reported)
TABLE2 = {row: {ds: {"JULE": v[0], "IDEC": v[1]} for ds, v in zip(("voc2007", "coil100", "umist"), vals)}
          for row, vals in _T2.items()}

#: Table 3: NMI of KMeans on a representation, TABLE3[representation][dataset]
TABLE3 = {
    "InceptionV3": {"voc2007": .624, "coil100": .932, "umist": .680},
    "InceptionV3+JULE": {"voc2007": .754, "coil100": .938, "umist": .775},
    "DMVC-fix": {"voc2007": .759, "coil100": .961, "umist": .895},
    "DMVC": {"voc2007": .786, "coil100": .964, "umist": .973},
}
