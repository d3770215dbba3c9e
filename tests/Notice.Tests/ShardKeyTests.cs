using Notice.Distributed;

namespace Notice.Tests;

public sealed class ShardKeyTests
{
    [Theory]
    [InlineData("s1", "image", "attn", null, "s1|image|attn")]
    [InlineData("s1", "text", "heads:cross", 3, "s1|text|heads:cross|L3")]
    [InlineData("svo|row 7", "image", "heads:attn", 0, "svo|row 7|image|heads:attn|L0")]
    [InlineData("a|b", "image", "mlp", null, "a|b|image|mlp")]
    public void AShardIdRoundTrips(string sample, string mode, string site, int? layer, string id)
    {
        var key = new ShardKey(sample, mode, site, layer);
        Assert.Equal(id, key.ToString());
        Assert.Equal(key, ShardKey.Parse(id));
    }

    [Fact]
    public void AttributionAndConfirmationShardIdsRoundTrip()
    {
        var atp = ShardKey.Atp("a|b", "image");
        Assert.Equal("a|b|image|*|atp", atp.ToString());
        Assert.Equal(atp, ShardKey.Parse(atp.ToString()));
        var confirm = ShardKey.Confirm("s1", "text");
        Assert.Equal("s1|text|*|confirm", confirm.ToString());
        Assert.Equal(confirm, ShardKey.Parse(confirm.ToString()));
        Assert.Null(ShardKey.Parse("s1|text|heads:attn|L2").Stage);
    }

    [Theory]
    [InlineData("")]
    [InlineData("s1|atp")]
    [InlineData("s1|image")]
    [InlineData("s1||attn")]
    public void AMalformedShardIdIsRefusedWithTheId(string id)
    {
        var e = Assert.Throws<FormatException>(() => ShardKey.Parse(id));
        Assert.Contains($"'{id}'", e.Message);
    }
}
