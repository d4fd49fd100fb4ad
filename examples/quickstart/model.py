"""The seed's news classifier, with a plain-Python tokenizer and vocabulary instead of torchtext.

The vocabulary is built at import time from the headline set in this file, so the module
rebuilds identically in any fresh process: model.py must carry everything predict_single uses.
"""

import re
from collections import Counter

import torch
from torch import nn

# A small labelled headline set written for the quickstart.
HEADLINES = [
    ("World", "Leaders meet in Geneva to discuss the ceasefire agreement"),
    ("World", "Parliament votes on new election law after long debate"),
    ("World", "Floods force thousands to leave their homes in the south"),
    ("World", "Prime minister visits border region amid rising tension"),
    ("World", "United Nations calls for aid to reach the refugee camps"),
    ("World", "Protesters gather in the capital demanding reforms"),
    ("World", "Embassy reopens as diplomatic talks resume between neighbours"),
    ("World", "President signs peace treaty ending decades of conflict"),
    ("World", "Earthquake strikes coastal towns, rescue teams deployed"),
    ("World", "Opposition leader arrested ahead of national vote"),
    ("Sports", "Liverpool beat Manchester United 4-2 in a thrilling match"),
    ("Sports", "Star striker scores twice as the home team wins the cup"),
    ("Sports", "Tennis champion reaches the final after a five set battle"),
    ("Sports", "Coach praises defence after a clean sheet in the derby"),
    ("Sports", "Olympic sprinter breaks the world record in the final"),
    ("Sports", "Goalkeeper saves a penalty to win the league title"),
    ("Sports", "Marathon runners battle heat in the city race"),
    ("Sports", "Basketball team signs a new point guard before the season"),
    ("Sports", "Cricket captain leads the side to a series victory"),
    ("Sports", "Cyclist wins the mountain stage and takes the yellow jersey"),
    ("Sports", "Arsenal beat Chelsea 2-1 on Sunday to go top of the table"),
    ("Sports", "City thrash United 5-0 on Saturday as fans celebrate"),
    ("Business", "Stock market rallies as inflation cools and rates hold"),
    ("Business", "Tech company shares fall after weak quarterly earnings"),
    ("Business", "Central bank raises interest rates to fight inflation"),
    ("Business", "Oil prices climb as supply cuts squeeze the market"),
    ("Business", "Retailer reports record profits over the holiday quarter"),
    ("Business", "Merger talks between two banks lift investor hopes"),
    ("Business", "Startup raises funding to expand into new markets"),
    ("Business", "Unemployment drops as factories hire more workers"),
    ("Business", "Airline cuts costs after revenue misses forecasts"),
    ("Business", "Investors sell bonds as the dollar strengthens"),
    ("Sci/Tec", "Scientists discover a new planet orbiting a distant star"),
    ("Sci/Tec", "New smartphone chip promises faster and cooler processors"),
    ("Sci/Tec", "Researchers train a neural network to read protein shapes"),
    ("Sci/Tec", "Space agency launches a rocket carrying a weather satellite"),
    ("Sci/Tec", "Software update fixes a security flaw in the browser"),
    ("Sci/Tec", "Engineers build a robot that learns to walk on ice"),
    ("Sci/Tec", "Astronomers capture an image of a black hole"),
    ("Sci/Tec", "Quantum computer solves a problem faster than supercomputers"),
    ("Sci/Tec", "Open source project releases a faster database engine"),
    ("Sci/Tec", "Telescope finds water vapour on a far away planet"),
]

LABEL_NAMES = ["World", "Sports", "Business", "Sci/Tec"]


def tokenize(text):
    return re.findall(r"[a-z0-9']+", text.lower())


counter = Counter(tok for _, line in HEADLINES for tok in tokenize(line))
vocab = {"<unk>": 0}
for word, _ in sorted(counter.items()):
    vocab[word] = len(vocab)

ag_news_label = {i + 1: name for i, name in enumerate(LABEL_NAMES)}


def text_pipeline(text):
    return [vocab.get(tok, 0) for tok in tokenize(text)] or [0]


class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size=len(vocab), embed_dim=32, num_class=4):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=True)
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        self.embedding.weight.data.uniform_(-initrange, initrange)
        self.fc.weight.data.uniform_(-initrange, initrange)
        self.fc.bias.data.zero_()

    def forward(self, tokens, offsets):
        return self.fc(self.embedding(tokens, offsets))

    def predict_single(self, input: str):
        tokens = torch.tensor(text_pipeline(input))
        output = self.forward(tokens, torch.tensor([0]))
        prediction = output.argmax(1).item() + 1
        return ag_news_label[prediction]
