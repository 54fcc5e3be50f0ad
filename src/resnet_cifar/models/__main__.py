"""`python -m resnet_cifar.models`: print the model table."""

from resnet_cifar.models import format_table, model_table

if __name__ == "__main__":
    print(format_table(model_table()))
