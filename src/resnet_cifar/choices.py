"""The fixed sets of values that configs, flags and APIs accept, each named once (this module imports nothing, so the
command-line parser can offer them without loading PyTorch)."""

PRECISIONS = ("auto", "bf16", "fp32")  # requested; a run computes in bf16 or fp32 (resnet_cifar.runtime decides)
TTA_LEVELS = (0, 1, 2)  # test-time augmentation: the image; + its mirror; + both shifted one pixel two ways
PAD_MODES = ("reflect", "zeros")  # how a random crop's padding is filled
AUGMIX_MODES = ("off", "mix", "jsd")  # off; one AugMix view; the clean image and two views for the Jensen-Shannon loss
# Where option A's shortcut puts the zero channels it adds (the paper leaves it open): "after" the identity channels,
# or "split", half before and half after (akamaster/pytorch_resnet_cifar10's layout, so its published weights compute
# what they were trained to).
SHORTCUT_PADDINGS = ("after", "split")
