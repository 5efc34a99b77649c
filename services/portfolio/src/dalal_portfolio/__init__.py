"""portfolio: the book of record of what the account holds and has earned."""
