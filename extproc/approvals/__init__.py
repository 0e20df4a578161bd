"""A person in the loop: tool calls held until someone approves or denies them."""
