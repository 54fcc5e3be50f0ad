"""The pictures show what they say: axes, labels, titles and marks checked on the figures themselves."""

import torch

from resnet_cifar.viz.pictures import confusion_figure, training_curves_figure


def test_pictures_say_what_they_show():
    rows = [
        {"epoch": 1, "train_loss": 1.3, "train_acc": 0.5, "val_loss": 0.9, "val_acc": 0.6},
        {"epoch": 2, "train_loss": 1.2, "train_acc": 0.6, "val_loss": 0.7, "val_acc": 0.7},
    ]
    legend = [t.get_text() for t in training_curves_figure(rows, "run", 0.2).axes[0].get_legend().get_texts()]
    assert legend == ["train (augmented, label smoothing 0.2)", "validation (plain cross-entropy)"]
    title = confusion_figure(torch.eye(10, dtype=torch.long) * 7, "best weights, flip TTA").axes[0].get_title()
    assert title == "Confusion matrix on the test set: best weights, flip TTA\n(accuracy 100.00%)"


def test_the_inference_picture_shows_what_it_says():
    from resnet_cifar.viz.pictures import CELL_H, CELL_W, RIGHT, WRONG, inference_figure

    labels = torch.arange(10).repeat(10)
    logits = torch.nn.functional.one_hot(labels, 10).float() * 5
    logits[labels == 3] = torch.nn.functional.one_hot(torch.tensor(5), 10).float() * 5  # every cat is called a dog
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    figure = inference_figure(images, labels, logits)
    shown = [text for text in figure.texts if "\ntrue: " in text.get_text()]
    assert len(shown) == 40  # four of every class
    wrong = [text.get_text() for text in shown if text.get_color() == WRONG and "true: cat" in text.get_text()]
    assert len(wrong) == 4 and all(caption.startswith("dog ") for caption in wrong)
    assert sum(text.get_color() == RIGHT for text in shown) == 36
    assert len(figure.images) == 1 and figure.images[0].get_array().shape == (5 * CELL_H, 8 * CELL_W, 3)
    assert "(36/40 correct shown; mistakes in red)" in figure._suptitle.get_text()


def test_the_data_efficiency_plot_has_a_log_axis_and_both_nets():
    from resnet_cifar.experiments.data_efficiency import summarize
    from resnet_cifar.viz.study_plots import data_efficiency_figure

    points = [
        {"kind": kind, "train_size": size, "seed": seed, "test_acc": acc, "val_acc": acc, "epochs": 1, "images_seen": 1}
        for kind, base in (("residual", 0.6), ("plain", 0.5))
        for size in (500, 5000)
        for seed, acc in ((0, base), (1, base + 0.02))
    ]
    ax = data_efficiency_figure({"summary": summarize(points), "budget": "1 step"}).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("class-balanced training images")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "residual, 2 seeds",
        "plain twin (no shortcuts), 2 seeds",
    ]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["500", "5,000"]
