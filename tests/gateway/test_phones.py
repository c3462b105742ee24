"""Phone numbers as the webhooks and the logs see them."""
import pytest

from gateway.phones import InvalidPhone, mask, normalise


@pytest.mark.parametrize("raw, region, phone", [
    ("+919812345210", "IN", "+919812345210"),
    (" 919812345210", "IN", "+919812345210"),  # '+' decoded to a space by form encoding
    ("+91 98123 45210", "IN", "+919812345210"),
    ("09812345210", "IN", "+919812345210"),
    ("9812345210", "in", "+919812345210"),
    ("+254711082123", "IN", "+254711082123"),  # a Kenyan number stays Kenyan whatever the region
    ("0711082123", "KE", "+254711082123"),
])
def test_normalise_gives_e164(raw, region, phone):
    assert normalise(raw, region) == phone


@pytest.mark.parametrize("raw", ["", "   ", "abc", "98123", "+1 800 FLOWERS", "+9198123452101234567", "+91-98x"])
def test_normalise_refuses_what_is_not_a_phone_number(raw):
    with pytest.raises(InvalidPhone):
        normalise(raw, "IN")


def test_invalid_phone_is_a_value_error():
    assert issubclass(InvalidPhone, ValueError)


@pytest.mark.parametrize("phone, masked", [
    ("+919812345210", "+9198*****210"),
    ("+254711082123", "+2547*****123"),
    ("12345", "1****"),
    ("", ""),
])
def test_mask_hides_the_middle_of_a_number(phone, masked):
    assert mask(phone) == masked
